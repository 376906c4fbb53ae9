"""Golden outputs for the Stable Diffusion 1.x parity tests (tests/fixtures/generative/), from the reference libraries
(diffusers, transformers, open_clip). Every model is a tiny random config with SD1.5's structure; weights are stored
in the exact diffusers / transformers state_dict names (position_ids buffers dropped), float32.

unet_tiny/       diffusers UNet2DConditionModel, SD1.5's block layout at tiny widths: block_out_channels (8, 16, 16),
                 down CrossAttnDownBlock2D x2 + DownBlock2D, mid UNetMidBlock2DCrossAttn, up UpBlock2D +
                 CrossAttnUpBlock2D x2, layers_per_block 2, norm_num_groups 4, cross_attention_dim 24,
                 attention_head_dim 2 (which diffusers reads as the number of heads, as SD1.5's 8), flip_sin_to_cos,
                 freq_shift 0, conv proj_in/proj_out (use_linear_projection False), silu.
                 weights.safetensors: the state_dict; metadata "config" (the constructor arguments, JSON).
                 golden.safetensors: sample [2, 4, 16, 16], timesteps int64 [2] = [3, 981], encoder_hidden_states
                 [2, 7, 24], out (UNet(...).sample), time_proj [2, 8] (the sinusoid, cos first) and time_emb [2, 32]
                 (TimestepEmbedding's output) for those timesteps, timesteps_float float32 [2] = [3.5, 500.0] and
                 out_float_t (the same sample and context at those timesteps); metadata: the parameter count and the
                 number of state_dict tensors of the real SD1.5 UNet config (sd15_parameters, sd15_state_dict_tensors).
vae_tiny/        diffusers AutoencoderKL: block_out_channels (8, 16, 16), 3x DownEncoderBlock2D / UpDecoderBlock2D,
                 layers_per_block 1, norm_num_groups 4, latent_channels 4, sample_size 32.
                 weights.safetensors: the state_dict (mid-block attention as group_norm/to_q/to_k/to_v/to_out.0);
                 weights_old_attention_names.safetensors: the same tensors with the mid-block attention in the names
                 diffusers < 0.14 saved (group_norm/query/key/value/proj_attn), which diffusers still converts on
                 load (ModelMixin._fix_state_dict_keys_on_load; checked here by loading it with from_pretrained).
                 golden.safetensors: x [2, 3, 32, 32] in [-1, 1], mean and logvar of encode(x).latent_dist
                 [2, 4, 8, 8] (logvar already clamped to [-30, 20]), decoded = decode(mean).sample, z [2, 4, 8, 8] and
                 decoded_from_z = decode(z).sample; metadata: scaling_factor and the parameter count of the SD1.5 VAE.
clip_text_tiny/  transformers CLIPTextModel (hidden 32, intermediate 64, 3 layers, 4 heads, max positions 16, vocab
                 100, quick_gelu, eos_token_id 2 as in SD1.5's config: pooled at argmax(input_ids)).
                 weights.safetensors in the checkpoint names (text_model.*, as SD1.5's text_encoder/ holds them;
                 transformers 5's module has no text_model level but loads them); golden.safetensors: input_ids int64
                 [2, 16] (98 = BOS-like, 99 = the highest id = EOS, padded with 99 as SD pads with EOS),
                 last_hidden_state, pooler_output, hidden_state_m2 (hidden_states[-2], before the final layer norm)
                 and hidden_state_m2_normed (final_layer_norm(hidden_states[-2]): what diffusers' clip_skip=1 feeds
                 the UNet); metadata: the parameter count of the SD1.5 text encoder config.
ddim.safetensors diffusers DDIMScheduler at SD1.5's settings (scaled_linear 0.00085..0.012 over 1000 steps, clip_sample
                 False, set_alpha_to_one False, steps_offset 1, timestep_spacing leading): alphas_cumprod [1000],
                 timesteps (set_timesteps(10)), sample and model_output [2, 4, 8, 8], prev_sample_first /
                 pred_original_first (step at timesteps[0], eta 0) and prev_sample_last / pred_original_last (step at
                 timesteps[-1], where the previous alpha-bar is final_alpha_cumprod = alphas_cumprod[0]) for
                 prediction_type epsilon, and the same with the _v suffix for prediction_type v_prediction.
ldm_tiny.safetensors
                 the tensors of unet_tiny, vae_tiny and clip_text_tiny in one file in the original CompVis/LDM
                 single-file names (the layout of v1-5-pruned-emaonly.safetensors), float32: the UNet under
                 model.diffusion_model. (time_embed.0/2, input_blocks.0.0 = conv_in, down block b's resnet/attention j
                 at input_blocks.{3b+j+1}.0/.1 and its downsampler at input_blocks.{3b+3}.0.op, middle_block.0/1/2,
                 up block b's resnet/attention j at output_blocks.{3b+j}.0/.1 and its upsampler at
                 output_blocks.{3b+2}.1.conv (UpBlock2D) or .2.conv (CrossAttnUpBlock2D), out.0/out.2; resnets as
                 in_layers.0/2, emb_layers.1, out_layers.0/3, skip_connection; transformer internals keep their names;
                 3 = layers_per_block + 1), the VAE under first_stage_model. (encoder.down.{i}.block.{j} /
                 .downsample.conv, decoder.up.{n-1-i}.block.{j} / .upsample.conv: the decoder's blocks numbered in
                 reverse, {encoder,decoder}.mid.block_1/attn_1/block_2 with the attention's norm/q/k/v/proj_out as 1x1
                 conv weights [C, C, 1, 1], nin_shortcut, norm_out, quant_conv, post_quant_conv), the text encoder
                 under cond_stage_model.transformer. (text_model.*, with text_model.embeddings.position_ids int64
                 [1, 16]), and keys a loader drops as real checkpoints hold them: alphas_cumprod and betas (float32
                 [1000], ddim's schedule), model_ema.decay (float32 scalar), model_ema.num_updates (int32 scalar) and
                 model_ema.diffusion_modelinput_blocks00weight (an EMA copy of conv_in's weight, LitEma's dotless
                 naming, not equal to it). Checked here: diffusers' single_file_utils converters
                 (convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint with the configs that
                 create_{unet,vae}_diffusers_config_from_ldm derive from LDM_ORIGINAL_CONFIG_TINY, and
                 convert_ldm_clip_checkpoint) give back exactly the diffusers / transformers names and tensors, as do
                 UNet2DConditionModel / AutoencoderKL.from_single_file and create_diffusers_clip_model_from_ldm.
clip_tokenizer/  the CLIP BPE tokenizer in the hub's file format, truncated to the first 3000 merges of open_clip's
                 bpe_simple_vocab_16e6.txt.gz: vocab.json (256 byte characters, the same with </w>, the 3000 merged
                 tokens, <|startoftext|> 3512, <|endoftext|> 3513), merges.txt ("#version: 0.2" then one merge a
                 line), tokenizer_config.json (as SD1.5's tokenizer folder has it).
                 golden.json: {"cases": [{"text", "ids" (unpadded: BOS + text + EOS, truncated to 77), "input_ids"
                 (padding="max_length", max_length=77, truncation=True: padded with <|endoftext|>), "tokens" (the BPE
                 strings between BOS and EOS), "ids_full_vocab" (the unpadded ids with all 48894 merges: SD1.5's real
                 ids), "transformers5_ids" (transformers 5's CLIPTokenizer, a tokenizers pipeline without ftfy, on the
                 truncated files, for the record: it differs where ftfy changes the text: curly quotes, HTML
                 entities)}], "cleaning" (which text-cleaning path the slow tokenizer took), versions,
                 "cleaning_cases" (the same records for prompts that exercise ftfy's fixes, str.lower() and the regex's
                 classes, plus "cleaned": the text after whitespace_clean(fix_text(text)).lower()), "invalid_utf8_cases"
                 (records for byte strings that are not UTF-8: "utf8_hex" the bytes, "text" what
                 bytes.decode("utf-8", "replace") makes of them, which the tokenizer then reads), "added_tokens"
                 {"tokens" ["<new1>", "<new2>"], "ids" (what tokenizer.add_tokens gave them), "vocab_size", "cases"
                 (records as above, with "transformers5_ids" from the fast tokenizer given the same add_tokens: it
                 matches added tokens in the lower-cased text, the slow one only as written)}}.
                 The reference is transformers 4's slow CLIPTokenizer (transformers 5 only has the tokenizers-backed
                 one), rebuilt below on transformers 5's PythonBackend as SlowCLIPTokenizer; its ids are checked
                 against open_clip's SimpleTokenizer on the full merges (differences are printed).

Weights: seeded unit-scale init (std 1/sqrt(fan_in) for matrices and convolutions, 1 +- 0.1 for norm weights,
0.1 * N(0, 1) for biases) so outputs are not near zero.
Run with the project's venv python: tools/golden/diffusion_golden.py
"""
import gzip
import json
import math
import os
import shutil
import tempfile
from functools import lru_cache

import diffusers
import open_clip
import regex as re
import torch
import transformers
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from golden_io import save
from transformers import AddedToken, CLIPTextConfig, CLIPTextModel
from transformers.tokenization_python import PythonBackend

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "generative")
torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()


def seeded_init(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 1:
                weight_of_norm = "norm" in name and name.endswith("weight")
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if weight_of_norm else 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def count(build):
    with torch.device("meta"):
        model = build()
        return sum(p.numel() for p in model.parameters()), len(model.state_dict())


def fresh(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# ---------------------------------------------------------------------------------------------------- UNet

UNET_TINY = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=[8, 16, 16],
                 down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                 mid_block_type="UNetMidBlock2DCrossAttn",
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], layers_per_block=2,
                 norm_num_groups=4, cross_attention_dim=24, attention_head_dim=2, flip_sin_to_cos=True, freq_shift=0,
                 use_linear_projection=False, act_fn="silu")
UNET_SD15 = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=[320, 640, 1280, 1280],
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, layers_per_block=2, norm_num_groups=32,
                 cross_attention_dim=768, attention_head_dim=8, flip_sin_to_cos=True, freq_shift=0, act_fn="silu")


def unet_model():
    torch.manual_seed(0)
    model = UNet2DConditionModel(**UNET_TINY).eval()
    seeded_init(model, 11)
    return model


def unet():
    model = unet_model()
    d = fresh("unet_tiny")
    sd = model.state_dict()
    save(dict(sd), os.path.join(d, "weights.safetensors"),
         {"source": f"diffusers {diffusers.__version__} UNet2DConditionModel", "config": json.dumps(UNET_TINY)})
    g = torch.Generator().manual_seed(12)
    sample = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 7, 24, generator=g)
    t = torch.tensor([3, 981], dtype=torch.int64)
    tf = torch.tensor([3.5, 500.0], dtype=torch.float32)
    with torch.no_grad():
        out = model(sample, t, encoder_hidden_states=context).sample
        out_f = model(sample, tf, encoder_hidden_states=context).sample
        t_proj = model.time_proj(t)
        t_emb = model.time_embedding(t_proj)
    n_sd15, tensors_sd15 = count(lambda: UNet2DConditionModel(**UNET_SD15))
    save({"sample": sample, "timesteps": t, "encoder_hidden_states": context, "out": out, "time_proj": t_proj,
          "time_emb": t_emb, "timesteps_float": tf, "out_float_t": out_f}, os.path.join(d, "golden.safetensors"),
         {"source": f"diffusers {diffusers.__version__} UNet2DConditionModel",
          "num_parameters": str(sum(p.numel() for p in model.parameters())), "state_dict_tensors": str(len(sd)),
          "sd15_parameters": str(n_sd15), "sd15_state_dict_tensors": str(tensors_sd15),
          "sd15_config": json.dumps(UNET_SD15)})
    print("unet", sum(p.numel() for p in model.parameters()), "sd15", n_sd15, tensors_sd15,
          "out std", float(out.std()), float(out_f.std()))


# ---------------------------------------------------------------------------------------------------- VAE

VAE_TINY = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16, 16],
                down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                layers_per_block=1, norm_num_groups=4, sample_size=32)
VAE_SD15 = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=2, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
OLD_ATTENTION_NAMES = {"to_q.": "query.", "to_k.": "key.", "to_v.": "value.", "to_out.0.": "proj_attn."}


def old_attention_names(sd):
    out = {}
    for k, v in sd.items():
        if ".mid_block.attentions." in k:
            for new, old in OLD_ATTENTION_NAMES.items():
                head, sep, tail = k.rpartition(".attentions.0.")
                if tail.startswith(new):
                    k = head + sep + old + tail[len(new):]
                    break
        out[k] = v
    return out


def vae_model():
    torch.manual_seed(0)
    model = AutoencoderKL(**VAE_TINY).eval()
    seeded_init(model, 21)
    return model


def vae():
    model = vae_model()
    d = fresh("vae_tiny")
    sd = dict(model.state_dict())
    source = f"diffusers {diffusers.__version__} AutoencoderKL"
    save(sd, os.path.join(d, "weights.safetensors"), {"source": source, "config": json.dumps(VAE_TINY)})
    old = old_attention_names(sd)
    assert len(old) == len(sd) and sum(a != b for a, b in zip(old, sd)) == 16
    save(old, os.path.join(d, "weights_old_attention_names.safetensors"),
         {"source": source + ", mid-block attention renamed to the pre-0.14 names (query/key/value/proj_attn)",
          "config": json.dumps(VAE_TINY)})
    g = torch.Generator().manual_seed(22)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    z = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        dist = model.encode(x).latent_dist
        decoded = model.decode(dist.mean).sample
        decoded_z = model.decode(z).sample
    # diffusers itself must accept the old names and give the same outputs
    with tempfile.TemporaryDirectory() as tmp:
        model.save_config(tmp)
        save(old, os.path.join(tmp, "diffusion_pytorch_model.safetensors"), {"format": "pt"})
        reloaded = AutoencoderKL.from_pretrained(tmp).eval()
        assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), sd.values()))
        with torch.no_grad():
            assert torch.equal(reloaded.decode(z).sample, decoded_z)
    n_sd15, tensors_sd15 = count(lambda: AutoencoderKL(**VAE_SD15))
    save({"x": x, "mean": dist.mean, "logvar": dist.logvar, "decoded": decoded, "z": z, "decoded_from_z": decoded_z},
         os.path.join(d, "golden.safetensors"),
         {"source": source, "num_parameters": str(sum(p.numel() for p in model.parameters())),
          "scaling_factor": str(model.config.scaling_factor), "sd15_parameters": str(n_sd15),
          "sd15_state_dict_tensors": str(tensors_sd15), "sd15_config": json.dumps(VAE_SD15)})
    print("vae", sum(p.numel() for p in model.parameters()), "sd15", n_sd15, tensors_sd15,
          "mean std", float(dist.mean.std()), "logvar", float(dist.logvar.min()), float(dist.logvar.max()))


# ---------------------------------------------------------------------------------------------------- CLIP text

CLIP_TEXT_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      max_position_embeddings=16, vocab_size=100, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                      bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=32)
CLIP_TEXT_SD15 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                      bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=768)


def clip_text_model():
    config = CLIPTextConfig(**CLIP_TEXT_TINY)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = CLIPTextModel(config).eval()
    seeded_init(model, 31)
    return model


def clip_text_weights(model):
    # transformers 5's CLIPTextModel has no text_model wrapper any more; SD checkpoints (text_encoder/) and
    # transformers 4 name everything text_model.*, which transformers 5 still loads (checked in clip_text)
    return {"text_model." + k: v for k, v in model.state_dict().items() if "position_ids" not in k}


def clip_text():
    model = clip_text_model()
    config = model.config
    d = fresh("clip_text_tiny")
    source = f"transformers {transformers.__version__} CLIPTextModel"
    weights = clip_text_weights(model)
    save(weights, os.path.join(d, "weights.safetensors"),
         {"source": source + ", checkpoint names (text_model.*)", "config": json.dumps(CLIP_TEXT_TINY)})
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        save(weights, os.path.join(tmp, "model.safetensors"), {"format": "pt"})
        reloaded = CLIPTextModel.from_pretrained(tmp, attn_implementation="eager").eval()
        assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))
    g = torch.Generator().manual_seed(32)
    ids = torch.full((2, 16), 99, dtype=torch.int64)
    ids[:, 0] = 98
    ids[0, 1:6] = torch.randint(3, 98, (5,), generator=g)  # EOS at 6, then 99 padding
    ids[1, 1:12] = torch.randint(3, 98, (11,), generator=g)  # EOS at 12
    with torch.no_grad():
        o = model(input_ids=ids, output_hidden_states=True)
        assert len(o.hidden_states) == 4 and torch.equal(model.final_layer_norm(o.hidden_states[-1]), o.last_hidden_state)
        m2_normed = model.final_layer_norm(o.hidden_states[-2])
        assert torch.equal(reloaded(input_ids=ids).pooler_output, o.pooler_output)
    n_sd15, _ = count(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_TEXT_SD15)))
    save({"input_ids": ids, "last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output,
          "hidden_state_m2": o.hidden_states[-2], "hidden_state_m2_normed": m2_normed},
         os.path.join(d, "golden.safetensors"),
         {"source": source, "num_parameters": str(sum(p.numel() for p in model.parameters())),
          "sd15_parameters": str(n_sd15), "sd15_config": json.dumps(CLIP_TEXT_SD15)})
    print("clip_text", sum(p.numel() for p in model.parameters()), "sd15", n_sd15, "ids", ids.tolist())


# ---------------------------------------------------------------------------------------------------- DDIM

DDIM_SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                 timestep_spacing="leading")


def ddim():
    g = torch.Generator().manual_seed(41)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    model_output = torch.randn(2, 4, 8, 8, generator=g)
    out = {"sample": sample, "model_output": model_output}
    for suffix, prediction in (("", "epsilon"), ("_v", "v_prediction")):
        s = DDIMScheduler(**dict(DDIM_SD15, prediction_type=prediction))
        s.set_timesteps(10)
        if not suffix:
            out["alphas_cumprod"] = s.alphas_cumprod
            out["timesteps"] = s.timesteps
            out["final_alpha_cumprod"] = s.final_alpha_cumprod.reshape(1).clone()
        for which, t in (("first", s.timesteps[0]), ("last", s.timesteps[-1])):
            r = s.step(model_output, t, sample, eta=0.0)
            out[f"prev_sample_{which}{suffix}"] = r.prev_sample
            out[f"pred_original_{which}{suffix}"] = r.pred_original_sample
    save(out, os.path.join(OUT, "ddim.safetensors"),
         {"source": f"diffusers {diffusers.__version__} DDIMScheduler", "config": json.dumps(DDIM_SD15),
          "num_inference_steps": "10", "eta": "0"})
    print("ddim timesteps", out["timesteps"].tolist(), out["timesteps"].dtype)


# ---------------------------------------------------------------------------------------------------- LDM single file

# The tiny models as the CompVis/LDM training config (v1-inference.yaml's layout) describes them: diffusers derives
# its model configs from this (create_*_diffusers_config_from_ldm), checked against UNET_TINY / VAE_TINY below.
LDM_ORIGINAL_CONFIG_TINY = {"model": {"params": {
    "unet_config": {"params": {"image_size": 16, "in_channels": 4, "out_channels": 4, "model_channels": 8,
                               "attention_resolutions": [2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 2],
                               "num_heads": 2, "use_spatial_transformer": True, "transformer_depth": 1,
                               "context_dim": 24, "use_checkpoint": True, "legacy": False}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 8,
        "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}},
    "scale_factor": 0.18215}}}
LDM_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                   "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
LDM_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_unet_name(key, layers_per_block, up_with_attention):
    """diffusers UNet2DConditionModel name -> name under model.diffusion_model. (SD1's openaimodel.UNetModel)."""
    n = layers_per_block + 1  # input_blocks per down block (resnets, then the downsampler); output_blocks per up block
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    module, _, leaf = key.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{leaf}"
    p = key.split(".")

    def resnet(prefix, rest):
        return f"{prefix}.{LDM_UNET_RESNET[rest[0]]}.{'.'.join(rest[1:])}"

    if p[0] == "down_blocks":
        b = int(p[1])
        if p[2] == "downsamplers":  # down_blocks.b.downsamplers.0.conv.*
            return f"input_blocks.{(b + 1) * n}.0.op.{p[-1]}"
        block = f"input_blocks.{b * n + int(p[3]) + 1}"
        return resnet(block + ".0", p[4:]) if p[2] == "resnets" else f"{block}.1.{'.'.join(p[4:])}"
    if p[0] == "mid_block":  # resnets.0, attentions.0, resnets.1 -> middle_block.0/1/2
        i = int(p[2]) * 2 + (p[1] == "attentions")
        return resnet(f"middle_block.{i}", p[3:]) if p[1] == "resnets" else f"middle_block.{i}.{'.'.join(p[3:])}"
    if p[0] == "up_blocks":
        b = int(p[1])
        if p[2] == "upsamplers":  # after the last resnet (and its attention, where the block has one)
            return f"output_blocks.{b * n + n - 1}.{2 if up_with_attention[b] else 1}.conv.{p[-1]}"
        block = f"output_blocks.{b * n + int(p[3])}"
        return resnet(block + ".0", p[4:]) if p[2] == "resnets" else f"{block}.1.{'.'.join(p[4:])}"
    raise KeyError(key)


def ldm_vae_name(key, num_blocks):
    """diffusers AutoencoderKL name -> name under first_stage_model. (ldm's AutoencoderKL)."""
    fixed = {"encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
    module, _, leaf = key.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{leaf}"
    p = key.split(".")
    if len(p) < 3 or p[1] not in ("down_blocks", "up_blocks", "mid_block"):
        return key  # {encoder,decoder}.conv_in / conv_out, quant_conv, post_quant_conv

    def resnet(prefix, rest):
        return ".".join([prefix] + ["nin_shortcut" if r == "conv_shortcut" else r for r in rest])

    if p[1] == "mid_block":
        if p[2] == "resnets":  # resnets.0/1 -> block_1/2
            return resnet(f"{p[0]}.mid.block_{int(p[3]) + 1}", p[4:])
        rest = ".".join(p[4:-1])  # attentions.0.<group_norm|to_q|to_k|to_v|to_out.0>.<weight|bias>
        return f"{p[0]}.mid.attn_1.{LDM_VAE_ATTENTION[rest]}.{p[-1]}"
    b = int(p[2])
    if p[1] == "down_blocks":
        if p[3] == "downsamplers":
            return f"encoder.down.{b}.downsample.conv.{p[-1]}"
        return resnet(f"encoder.down.{b}.block.{p[4]}", p[5:])
    if p[3] == "upsamplers":  # decoder.up is numbered from the lowest resolution's end: reversed
        return f"decoder.up.{num_blocks - 1 - b}.upsample.conv.{p[-1]}"
    return resnet(f"decoder.up.{num_blocks - 1 - b}.block.{p[4]}", p[5:])


def ldm_single_file():
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm, infer_diffusers_model_type)
    unet_sd = dict(unet_model().state_dict())
    vae_sd = dict(vae_model().state_dict())
    text = clip_text_model()
    text_sd = clip_text_weights(text)
    up_with_attention = ["CrossAttn" in t for t in UNET_TINY["up_block_types"]]
    ckpt = {}
    for k, v in unet_sd.items():
        ckpt["model.diffusion_model." + ldm_unet_name(k, UNET_TINY["layers_per_block"], up_with_attention)] = v
    for k, v in vae_sd.items():
        if ".mid_block.attentions." in k and v.dim() == 2:  # attention projections are 1x1 convolutions in ldm
            v = v[:, :, None, None]
        ckpt["first_stage_model." + ldm_vae_name(k, len(VAE_TINY["block_out_channels"]))] = v
    for k, v in text_sd.items():
        ckpt["cond_stage_model.transformer." + k] = v
    n_positions = CLIP_TEXT_TINY["max_position_embeddings"]
    ckpt["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(n_positions)[None]
    assert len(ckpt) == len(unet_sd) + len(vae_sd) + len(text_sd) + 1, "two diffusers names map to one ldm name"
    # what full training checkpoints hold besides the three models, which a loader drops: the DDPM schedule buffers
    # (two of them here), the EMA's bookkeeping and EMA copies of the UNet's parameters (LitEma names them
    # model_ema.<the diffusion_model name with the dots removed>; here one, conv_in's weight, as a slightly different
    # tensor)
    schedule = DDIMScheduler(**DDIM_SD15)
    extra = {"alphas_cumprod": schedule.alphas_cumprod.float(), "betas": schedule.betas.float(),
             "model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
             "model_ema.num_updates": torch.tensor(470000, dtype=torch.int32)}
    conv_in = ckpt["model.diffusion_model.input_blocks.0.0.weight"]
    g = torch.Generator().manual_seed(51)
    extra["model_ema.diffusion_modelinput_blocks00weight"] = conv_in + 0.01 * torch.randn(conv_in.shape, generator=g)
    ckpt.update(extra)
    path = os.path.join(OUT, "ldm_tiny.safetensors")
    save(ckpt, path, {"source": f"diffusers {diffusers.__version__} UNet2DConditionModel + AutoencoderKL, "
                                f"transformers {transformers.__version__} CLIPTextModel (unet_tiny, vae_tiny, "
                                "clip_text_tiny), renamed to the CompVis/LDM single-file layout "
                                "(v1-5-pruned-emaonly.safetensors)"})

    # diffusers' own single-file converters must give the diffusers / transformers names and tensors back
    from safetensors.torch import load_file
    loaded = load_file(path)
    assert infer_diffusers_model_type(loaded) == "v1"
    unet_config = create_unet_diffusers_config_from_ldm(LDM_ORIGINAL_CONFIG_TINY, loaded)
    vae_config = create_vae_diffusers_config_from_ldm(LDM_ORIGINAL_CONFIG_TINY, loaded)
    for k in ("in_channels", "out_channels", "block_out_channels", "down_block_types", "up_block_types",
              "layers_per_block", "cross_attention_dim", "attention_head_dim", "use_linear_projection"):
        assert unet_config[k] == UNET_TINY[k], (k, unet_config[k], UNET_TINY[k])
    for k in ("in_channels", "out_channels", "latent_channels", "block_out_channels", "down_block_types",
              "up_block_types", "layers_per_block"):
        assert vae_config[k] == VAE_TINY[k], (k, vae_config[k], VAE_TINY[k])

    def same(name, got, want):
        assert sorted(got) == sorted(want), (name, sorted(set(got) ^ set(want))[:10])
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), (name, k)

    same("unet", convert_ldm_unet_checkpoint(loaded, unet_config), unet_sd)
    same("vae", convert_ldm_vae_checkpoint(loaded, vae_config), vae_sd)
    position_ids = {"text_model.embeddings.position_ids": torch.arange(n_positions)[None]}
    same("clip_text", convert_ldm_clip_checkpoint(loaded), dict(text_sd, **position_ids))
    # and the whole loader path, from the file: UNet2DConditionModel / AutoencoderKL.from_single_file with the tiny
    # configs, and the text encoder as diffusers' single-file pipeline loading builds it
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    with tempfile.TemporaryDirectory() as tmp:
        for cls, config, want in ((UNet2DConditionModel, UNET_TINY, unet_sd), (AutoencoderKL, VAE_TINY, vae_sd)):
            d = os.path.join(tmp, cls.__name__)
            cls(**config).save_config(d)
            same(cls.__name__, dict(cls.from_single_file(path, config=d, local_files_only=True).state_dict()), want)
        text.config.save_pretrained(os.path.join(tmp, "text"))
        reloaded = create_diffusers_clip_model_from_ldm(CLIPTextModel, loaded, config=os.path.join(tmp, "text"),
                                                        local_files_only=True)
        same("CLIPTextModel", clip_text_weights(reloaded), text_sd)
    print("ldm single file", len(ckpt), "tensors", os.path.getsize(path), "bytes; extra", sorted(extra))


# ---------------------------------------------------------------------------------------------------- tokenizer

@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return {(a, b) for a, b in zip(word[:-1], word[1:])}


class SlowCLIPTokenizer(PythonBackend):
    """transformers 4's slow CLIPTokenizer (what SD pipelines loaded from the tokenizer/ folder), which transformers 5
    dropped, rebuilt on transformers 5's PythonBackend: special tokens split out of the text first (the added-token
    trie), each remaining segment cleaned (ftfy.fix_text, whitespace collapsed, lower case; without ftfy a BERT
    BasicTokenizer would clean instead), split by CLIP's regex and byte-level BPE'd with </w> on each word's end."""
    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, merges_file, unk_token="<|endoftext|>", bos_token="<|startoftext|>",
                 eos_token="<|endoftext|>", pad_token="<|endoftext|>", **kwargs):
        import ftfy  # the generator needs ftfy: the cleaning path it records is ftfy's
        self.fix_text = ftfy.fix_text
        with open(vocab_file, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with open(merges_file, encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.bpe_ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                              re.IGNORECASE)
        special = {k: AddedToken(v, lstrip=False, rstrip=False) for k, v in
                   (("unk_token", unk_token), ("bos_token", bos_token), ("eos_token", eos_token))}
        super().__init__(pad_token=pad_token, **special, **kwargs)

    @property
    def vocab_size(self):
        return len(self.encoder)

    def get_vocab(self):
        return dict(self.encoder, **self.added_tokens_encoder)

    def build_inputs_with_special_tokens(self, a, b=None):
        out = [self.bos_token_id] + a + [self.eos_token_id]
        return out if b is None else out + [self.eos_token_id] + b + [self.eos_token_id]

    def num_special_tokens_to_add(self, pair=False):
        return 4 if pair else 2

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def _tokenize(self, text, **kwargs):
        text = re.sub(r"\s+", " ", self.fix_text(text)).strip().lower()
        out = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            out.extend(self.bpe(token).split(" "))
        return out

    def _convert_token_to_id(self, token):
        return self.encoder.get(token, self.encoder.get(self.unk_token))

    def _convert_id_to_token(self, index):
        return self.decoder.get(index)

    def convert_tokens_to_string(self, tokens):
        text = bytearray([self.byte_decoder[c] for c in "".join(tokens)]).decode("utf-8", errors="replace")
        return text.replace("</w>", " ").strip()


NUM_MERGES = 3000
PROMPTS = [
    "a photo of a sks dog",
    "A Photo Of An Astronaut Riding A Horse On MARS",
    "masterpiece, best quality, (highly detailed:1.2), 8k!!! -- ultra-sharp...",
    "digits 123 and 4567.89 and 2024-06-01",
    "it's what they'd've done; we're here, you'll see, I'm sure",
    "it\u2019s a \u201ccurly\u201d quote",
    "multiple    spaces\tand\ttabs\nand newlines  ",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "emoji \U0001F600 \U0001F3A8 \u2764\ufe0f and symbols \u2264 \u00b1 \u00b7",
    "\u5bcc\u58eb\u5c71\u306e\u7d75 \u0444\u043e\u0442\u043e \u03b3\u03ac\u03c4\u03b1",
    "Tom &amp; Jerry &lt;3",
    "a cat <|endoftext|> a dog",
    "<|startoftext|>already wrapped<|endoftext|>",
    "",
    "   ",
    "hyperrealistic octane render of a cyberpunk cityscape at night",
    ", ".join(["a very long prompt with many words"] * 12) + " and the tail that is cut off",
]
# What the C++ tokenizer reproduces of ftfy.fix_text, str.lower() and the pre-tokenizer's classes (not NFC, not mojibake).
CLEANING_PROMPTS = [
    "caf&eacute; &EACUTE;T&Eacute; stra&SZLIG;e &mdash; &hellip; &nbsp;x &apos;q&apos; &#8217;s &#x2764; &#128512;",
    "&amp;amp; &amp;lt;3 &#0; &#13;x &#x110000; &#65abc; &#59; &#x; &#150; &#X41; &abcdefghijklmnopqrstuvwxyz;",
    "a < b &amp; c\n&amp; d",
    "&amp; line one\nline <two> &amp;\n&amp; three",
    "\ufb01ne \ufb02ower \u0132sselmeer \uff21\uff22\uff23\u3000\uff44\uff45\uff46 \uff76 \uffe3 x \uff02q\uff02",
    "c1 \x80 \x85 \x91quoted\x92 \x81 \u02bctis \u201bx\u201f",
    "line\r\nbreaks\rand\u2028separators\u2029end\x0bvt\x0cff\x1cfs",
    "colou\x1b[31mred\x1b[0m text \x1b[1;2x \x1b[5 \x07bell\x00nul \ufeffbom \u206aarabic \ufffcobj \x1b[\u0663m",
    "\u039f\u0394\u039f\u03a3 \u039a\u0391\u0399 \u03a3 \u0391\u03a3\u0391 \u0391\u03a3' \u0391'\u03a3 \u0391\u00ad\u03a3 \u0130stanbul",
    "it'\u017f \u017ftar <|\u017ftartoftext|> b\u0345c \u0345x !\u0345!",
    "A <|ENDOFTEXT|> b<|startoftext|>c <|endoftext|>d !!<|endoftext|>",
    "'S 'Re 'VE don't ''s ' s it''ll I'D",
    "\u0661\u0662\u0663 \u2160\u2161 \u00bd x\u00b2 \u0915\u094d\u0937 \u0e01\u0e34 \U0001F1FA\U0001F1F8 \U00020000 \U00031350",
    "tabs\u00a0nbsp\u2003em\u200bzwsp\u3000ideo \u1680ogham \u180emvs",
]
INVALID_UTF8 = [
    b"a\xff b\xc3 c\xe2\x82 d\xed\xa0\x80 e\xf0\x9f\x98 f\xc0\xaf g\xf4\x90\x80\x80 h\xe2\x82",
    b"\xe2\x80\x9cok\xe2\x80\x9d \x80\x80 \xf5\xfe caf\xc3\xa9\xc3",
]
ADDED_TOKENS = ["<new1>", "<new2>"]
ADDED_PROMPTS = [
    "a photo of a <new1> dog",
    "<new1><new2>",
    "A <NEW1> cat",
    "photo<new1>graph",
    "a <|endoftext|><new1> and <new2>s",
    "<new2>, <new1> &amp; <new2>",
]


def hf_files(d, num_merges):
    """vocab.json and merges.txt as the hub's CLIP tokenizer folders hold them, from open_clip's merges file."""
    lines = gzip.open(os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = lines[1:1 + num_merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {t: i for i, t in enumerate(vocab)}
    assert len(encoder) == len(vocab), "a merged token repeats"
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(encoder, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(encoder)


TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "<|endoftext|>",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
}


def slow_tokenizer(d):
    return SlowCLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), model_max_length=77)


def tokenizer():
    import ftfy
    d = fresh("clip_tokenizer")
    n_vocab = hf_files(d, NUM_MERGES)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)
        f.write("\n")
    tok = slow_tokenizer(d)
    fast = transformers.CLIPTokenizer.from_pretrained(d)  # transformers 5's tokenizers-backed one, for the record
    with tempfile.TemporaryDirectory() as tmp:
        hf_files(tmp, 49152 - 256 - 2)
        full = slow_tokenizer(tmp)
        reference = open_clip.tokenizer.SimpleTokenizer()
        differences = 0
        for text in PROMPTS:
            a = full(text, truncation=True, max_length=77).input_ids
            b = reference(text)[0]
            b = b[:int((b == reference.eot_token_id).nonzero()[0]) + 1].tolist()
            if a != b:
                differences += 1
                print(f"  transformers slow != open_clip on {text!r}:\n    {a}\n    {b}")
        print(f"full merges: slow CLIPTokenizer == open_clip SimpleTokenizer on {len(PROMPTS) - differences}/{len(PROMPTS)}")
        cases = []
        for text in PROMPTS:
            ids = tok(text, truncation=True, max_length=77).input_ids
            padded = tok(text, padding="max_length", max_length=77, truncation=True).input_ids
            assert len(padded) == 77 and padded[:len(ids)] == ids
            cases.append({"text": text, "ids": ids, "input_ids": padded,
                          "tokens": tok.convert_ids_to_tokens(ids[1:-1]),
                          "ids_full_vocab": full(text, truncation=True, max_length=77).input_ids,
                          "transformers5_ids": fast(text, truncation=True, max_length=77).input_ids})

    def record(t, text, f=None):
        ids = t(text, truncation=True, max_length=77).input_ids
        out = {"text": text, "ids": ids, "input_ids": t(text, padding="max_length", max_length=77, truncation=True).input_ids,
               "tokens": t.convert_ids_to_tokens(ids[1:-1])}
        if f is not None:
            out["transformers5_ids"] = f(text, truncation=True, max_length=77).input_ids
        return out

    def lines(records):
        return "[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in records) + "\n ]"

    def cleaned(text):
        return re.sub(r"\s+", " ", ftfy.fix_text(text)).strip().lower()

    cleaning = [dict(record(tok, text), cleaned=cleaned(text)) for text in CLEANING_PROMPTS]
    invalid = [dict(record(tok, b.decode("utf-8", "replace")), utf8_hex=b.hex()) for b in INVALID_UTF8]
    added_tok, added_fast = slow_tokenizer(d), transformers.CLIPTokenizer.from_pretrained(d)
    added_tok.add_tokens(ADDED_TOKENS)
    added_fast.add_tokens(ADDED_TOKENS)
    added_ids = added_tok.convert_tokens_to_ids(ADDED_TOKENS)
    assert added_ids == added_fast.convert_tokens_to_ids(ADDED_TOKENS)
    added = [record(added_tok, text, added_fast) for text in ADDED_PROMPTS]
    golden = {"vocab_size": n_vocab, "num_merges": NUM_MERGES, "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id,
              "pad_id": tok.pad_token_id, "model_max_length": 77,
              "cleaning": f"ftfy {ftfy.__version__} fix_text, then whitespace runs -> one space, strip, lower()",
              "reference": "transformers 4 slow CLIPTokenizer (SlowCLIPTokenizer in tools/golden/diffusion_golden.py)",
              "transformers": transformers.__version__, "open_clip": open_clip.__version__, "cases": cases}
    with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:  # one line a case
        head = json.dumps({k: v for k, v in golden.items() if k != "cases"}, indent=1, ensure_ascii=False)
        added_head = json.dumps({"tokens": ADDED_TOKENS, "ids": added_ids, "vocab_size": len(added_tok)}, ensure_ascii=False)
        f.write(head[:-2] + ',\n "cases": ' + lines(cases) + ',\n "cleaning_cases": ' + lines(cleaning) +
                ',\n "invalid_utf8_cases": ' + lines(invalid) + ',\n "added_tokens": ' + added_head[:-1] +
                ', "cases": ' + lines(added) + "}\n}\n")
    print("tokenizer vocab", n_vocab, "lengths", [len(c["ids"]) for c in cases], "transformers 5 CLIPTokenizer differs on",
          [c["text"] for c in cases if c["ids"] != c["transformers5_ids"]])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    unet()
    vae()
    clip_text()
    ddim()
    ldm_single_file()
    tokenizer()
