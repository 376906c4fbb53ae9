"""transformers + PEFT side of bench/vlm.cpp: the same small LLaVA, LoRA + projector training step and
greedy generation, same shapes and threads (transformers reads the 49 image tokens already expanded in
input_ids; Facet expands one placeholder). Prints one JSON line per part."""
import argparse
import json
import time

import torch
from timing import ms_per_call
from peft import LoraConfig, get_peft_model
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

ap = argparse.ArgumentParser()
for k, v in dict(batch=2, text=64, steps=5, warmup=2, prompt=16, new=32, threads=0).items():
    ap.add_argument(f"--{k}", type=int, default=v)
a = ap.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
IMG = 31999
vc = CLIPVisionConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6, image_size=224,
                      patch_size=32, hidden_act="quick_gelu")
tc = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                 max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)
config = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=IMG, vision_feature_layer=-2,
                     vision_feature_select_strategy="default", image_seq_length=49)
config._attn_implementation = "sdpa"
model = LlavaForConditionalGeneration(config)
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
for n, p in model.named_parameters():
    if "multi_modal_projector" in n:
        p.requires_grad_(True)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(3, 31000, (a.batch, a.text))
ids = torch.cat([ids[:, :1], torch.full((a.batch, 49), IMG), ids[:, 2:]], 1)  # one placeholder -> 49 tokens
labels = ids.masked_fill(ids == IMG, -100)
pixels = torch.randn(a.batch, 3, 224, 224)
model.train()


def step():
    opt.zero_grad()
    model(input_ids=ids, pixel_values=pixels, labels=labels).loss.backward()
    opt.step()


ms = ms_per_call(step, a.warmup, a.steps)
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"impl": "transformers+peft", "part": "train", "params": params, "batch": a.batch, "text": a.text,
                  "threads": torch.get_num_threads(), "ms_per_step": round(ms, 2)}))

model = model.merge_and_unload().eval()
prompt = torch.arange(100, 100 + a.prompt).unsqueeze(0)
prompt = torch.cat([prompt[:, :1], torch.full((1, 49), IMG), prompt[:, 2:]], 1)
image = torch.randn(1, 3, 224, 224)
kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
with torch.no_grad():
    model.generate(input_ids=prompt, pixel_values=image, max_new_tokens=4, min_new_tokens=4, **kw)
    t = time.perf_counter()
    out = model.generate(input_ids=prompt, pixel_values=image, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
    s = time.perf_counter() - t
n = out.shape[1] - prompt.shape[1]
print(json.dumps({"impl": "transformers", "part": "generate", "prompt": a.prompt, "new_tokens": n,
                  "threads": torch.get_num_threads(), "tokens_per_s": round(n / s, 2)}))
