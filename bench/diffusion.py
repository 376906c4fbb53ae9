"""One Custom Diffusion training step with diffusers + transformers, the counterpart of
bench/diffusion.cpp: the same networks (SD 1.x's layout at reduced width), the VAE encoding without
gradient, the text tower with a trainable word embedding (the embedding table trains, other rows'
gradients zeroed, as diffusers' Custom Diffusion script does), the masked ε MSE, AdamW on the cross-attention K/V and the
word. Prints one JSON line.
  python bench/diffusion.py [--size 128] [--batch 2] [--width 64] [--steps 3] [--warmup 1] [--threads N]
"""
import argparse
import json

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import CustomDiffusionAttnProcessor2_0
from transformers import CLIPTextConfig, CLIPTextModel

from timing import ms_per_call


def main() -> None:
    p = argparse.ArgumentParser()
    for name, default in (("size", 128), ("batch", 2), ("width", 64), ("steps", 3), ("warmup", 1), ("threads", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    w = a.width
    text = CLIPTextModel(CLIPTextConfig(vocab_size=3515, hidden_size=256, intermediate_size=1024, num_hidden_layers=12,
                                        num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=0, eos_token_id=2, pad_token_id=1))  # SD 1.x's config values
    vae = AutoencoderKL(block_out_channels=(32, 64, 128, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
    unet = UNet2DConditionModel(sample_size=a.size // 8, block_out_channels=(w, 2 * w, 4 * w, 4 * w), cross_attention_dim=256,
                                attention_head_dim=8)
    # Custom Diffusion's processor: trainable K/V in the cross-attention, the start token detached.
    procs = {}
    for name, proc in unet.attn_processors.items():
        cross = name.endswith("attn2.processor")
        procs[name] = proc
        if cross:
            block = unet.get_submodule(name[: -len(".processor")])
            p2 = CustomDiffusionAttnProcessor2_0(train_kv=True, train_q_out=False, hidden_size=block.to_q.out_features,
                                                 cross_attention_dim=256)
            p2.to_k_custom_diffusion.weight.data.copy_(block.to_k.weight.data)
            p2.to_v_custom_diffusion.weight.data.copy_(block.to_v.weight.data)
            procs[name] = p2
    unet.set_attn_processor(procs)
    for m in (text, vae, unet):
        m.requires_grad_(False)
        m.train()
    params = []
    for proc in unet.attn_processors.values():
        if isinstance(proc, CustomDiffusionAttnProcessor2_0):
            proc.requires_grad_(True)
            params += list(proc.parameters())
    # As diffusers' Custom Diffusion script: the whole embedding table trains, every row's gradient but
    # the new word's zeroed after backward.
    table = text.get_input_embeddings().weight
    table.requires_grad_(True)
    params.append(table)
    others = torch.arange(3515) != 3514
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    images = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
    mask = torch.ones(a.batch, 1, a.size // 8, a.size // 8)
    ids = torch.full((a.batch, 77), 3513)
    ids[:, :8] = torch.tensor([3512, 1125, 539, 320, 3514, 2368, 3513, 3513])

    def step():
        optimizer.zero_grad()
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.sample() * 0.18215
        context = text(ids).last_hidden_state
        t = torch.randint(0, 1000, (a.batch,))
        noise = torch.randn_like(latents)
        pred = unet(scheduler.add_noise(latents, noise, t), t, context).sample
        err = (pred - noise).pow(2) * mask
        (err.reshape(a.batch, -1).sum(1) / mask.expand_as(err).reshape(a.batch, -1).sum(1)).mean().backward()
        table.grad[others] = 0
        optimizer.step()

    ms = ms_per_call(step, a.warmup, a.steps)
    print(json.dumps({"impl": "pytorch", "model": f"custom_diffusion_w{w}", "batch": a.batch, "size": a.size,
                      "threads": torch.get_num_threads(), "ms_per_step": round(ms, 3)}))


if __name__ == "__main__":
    main()
