"""Golden outputs for the vision-language parity tests (tests/vlm/), from the reference libraries:

clip_tiny/       transformers CLIPVisionModel (tiny random config, quick-GELU): weights.safetensors in the hub
                 CLIPModel names (vision_model.*), golden.safetensors: pixel_values [2, 3, 32, 32],
                 last_hidden_state, pooler_output, hidden_m2 (hidden_states[-2]); metadata: the parameter
                 counts of CLIPVisionModel at ViT-L/14-336 (LLaVA-1.5) and ViT-B/32 (PubMedCLIP).
timm_tiny/       timm VisionTransformer (BiomedCLIP's trunk type, tiny): weights in timm names, golden:
                 x [2, 3, 32, 32], features (forward_features: tokens after the final norm, CLS first);
                 metadata: the parameter count of vit_base_patch16_224 without a head (BiomedCLIP's trunk).
preprocess.safetensors  transformers CLIPImageProcessor (size 32, crop 32) on three images (RGB 45x30,
                 RGB 20x64, grey 30x30), plain and after LLaVA's expand2square (pad with the mean colour).
llava_tiny/      transformers LlavaForConditionalGeneration (tiny CLIP + tiny Llama, vision_feature_layer -2,
                 CLS dropped, mlp2x_gelu projector): model.safetensors as save_pretrained writes it,
                 original_layout.safetensors (the same tensors in the LLaVA repository's names:
                 model.mm_projector.0/2, model.vision_tower.vision_tower.vision_model.*, model.layers...),
                 golden.safetensors: input_ids [2, 9] with one <image> placeholder each (id 99), pixel_values,
                 expanded_ids (what transformers reads: 16 placeholders per image), logits (over expanded_ids),
                 labels (over input_ids, -100 on the prompt) and loss (transformers' loss over the expanded
                 labels), greedy [2, 8] (generate, do_sample False, each row alone).

Weights: seeded unit-scale init (std 1/sqrt(fan_in) for matrices, 1 +- 0.1 for vectors) so outputs are not near zero.
Run with the project's venv python: tools/golden/vlm_golden.py
"""
import math
import os
import shutil

import numpy as np
import timm
import torch
import transformers
from golden_io import save
from PIL import Image
from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "vlm")
torch.set_num_threads(1)


def seeded_init(model, seed, embed_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if "norm" in name else 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) * embed_scale)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def count(model_class, config):
    with torch.device("meta"):
        return sum(p.numel() for p in model_class(config).parameters())


TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
                 patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def clip():
    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).eval()
    seeded_init(model, 1)
    d = os.path.join(OUT, "clip_tiny")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save({"vision_model." + k: v for k, v in model.state_dict().items() if "position_ids" not in k},
         os.path.join(d, "weights.safetensors"), {"source": "transformers CLIPVisionModel, hub CLIPModel names"})
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        o = model(pixel_values=x, output_hidden_states=True)
    large = count(CLIPVisionModel, CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                    num_attention_heads=16, image_size=336, patch_size=14))
    base32 = count(CLIPVisionModel, CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                     num_attention_heads=12, image_size=224, patch_size=32))
    save({"pixel_values": x, "last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output,
          "hidden_m2": o.hidden_states[-2]}, os.path.join(d, "golden.safetensors"),
         {"source": f"transformers {transformers.__version__} CLIPVisionModel",
          "num_parameters": str(sum(p.numel() for p in model.parameters())),
          "vit_l14_336_parameters": str(large), "vit_b32_parameters": str(base32)})
    print("clip", large, base32)


def timm_vit():
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                                             num_heads=4, num_classes=0).eval()
    seeded_init(model, 3)
    d = os.path.join(OUT, "timm_tiny")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save(dict(model.state_dict()), os.path.join(d, "weights.safetensors"), {"source": "timm VisionTransformer"})
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        f = model.forward_features(x)
    with torch.device("meta"):
        b16 = sum(p.numel() for p in timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).parameters())
    save({"x": x, "features": f}, os.path.join(d, "golden.safetensors"),
         {"source": f"timm {timm.__version__} VisionTransformer", "vit_b16_parameters": str(b16)})
    print("timm", b16)


def expand2square(img, colour):
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), colour)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def preprocess():
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (45, 30, 3), dtype=np.uint8), rng.integers(0, 256, (20, 64, 3), dtype=np.uint8),
              rng.integers(0, 256, (30, 30), dtype=np.uint8)]
    # smooth them a little: pure noise exaggerates the resampling differences a real image never shows
    images = [np.asarray(Image.fromarray(a).resize((a.shape[1] // 3, a.shape[0] // 3), Image.BILINEAR)
                         .resize((a.shape[1], a.shape[0]), Image.BICUBIC)) for a in images]
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    mean = tuple(int(x * 255) for x in proc.image_mean)
    out = {}
    for i, a in enumerate(images):
        pil = Image.fromarray(a)
        out[f"image{i}"] = torch.from_numpy(a.copy())
        out[f"plain{i}"] = proc(images=pil, return_tensors="pt")["pixel_values"][0]
        out[f"pad{i}"] = proc(images=expand2square(pil.convert("RGB"), mean), return_tensors="pt")["pixel_values"][0]
    save(out, os.path.join(OUT, "preprocess.safetensors"),
         {"source": f"transformers {transformers.__version__} CLIPImageProcessor size 32 crop 32"})


def llava():
    vc = CLIPVisionConfig(**TINY_CLIP)
    tc = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                     tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu", image_seq_length=16)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    seeded_init(model, 6)
    d = os.path.join(OUT, "llava_tiny")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    for f in os.listdir(d):
        if f not in ("model.safetensors", "config.json"):
            os.remove(os.path.join(d, f))
    model = LlavaForConditionalGeneration.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
    # the LLaVA repository's names for the same tensors
    orig = {}
    for k, v in model.state_dict().items():
        if k.startswith("model.vision_tower."):
            orig["model.vision_tower.vision_tower.vision_model." + k[len("model.vision_tower."):]] = v
        elif k.startswith("model.multi_modal_projector."):
            orig[k.replace("multi_modal_projector.linear_1", "mm_projector.0").replace("multi_modal_projector.linear_2", "mm_projector.2")] = v
        elif k.startswith("model.language_model."):
            orig["model." + k[len("model.language_model."):]] = v
        else:
            orig[k] = v
    save(orig, os.path.join(d, "original_layout.safetensors"), {"source": "LLaVA repository names"})

    g = torch.Generator().manual_seed(8)
    ids = torch.randint(3, 99, (2, 9), generator=g)
    ids[:, 0] = 1
    ids[0, 2] = 99
    ids[1, 4] = 99
    labels = ids.clone()
    labels[:, :6] = -100
    pixels = torch.randn(2, 3, 32, 32, generator=g)

    def expand(t, fill=None):
        rows = []
        for r, row in zip(ids, t):
            p = int((r == 99).nonzero()[0])
            mid = torch.full((16,), 99 if fill is None else fill, dtype=row.dtype)
            rows.append(torch.cat([row[:p], mid, row[p + 1:]]))
        return torch.stack(rows)

    expanded = expand(ids)
    with torch.no_grad():
        o = model(input_ids=expanded, pixel_values=pixels, labels=expand(labels, -100))
        greedy = []
        for b in range(2):
            out = model.generate(input_ids=expanded[b:b + 1], pixel_values=pixels[b:b + 1],
                                 attention_mask=torch.ones_like(expanded[b:b + 1]), max_new_tokens=8, do_sample=False,
                                 pad_token_id=0, eos_token_id=2)
            greedy.append(out[0, expanded.shape[1]:])
    n = sum(p.numel() for p in model.parameters())
    save({"input_ids": ids, "pixel_values": pixels, "expanded_ids": expanded, "logits": o.logits, "labels": labels,
          "loss": o.loss.reshape(1), "greedy": torch.stack(greedy)}, os.path.join(d, "golden.safetensors"),
         {"source": f"transformers {transformers.__version__} LlavaForConditionalGeneration", "num_parameters": str(n)})
    print("llava", n, "loss", float(o.loss), "greedy", torch.stack(greedy).tolist())


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    clip()
    timm_vit()
    preprocess()
    llava()
