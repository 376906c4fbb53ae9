"""transformers + PEFT side of bench/llm.cpp: the same LLaMA configuration, LoRA training step and greedy
generation, same shapes and threads. Prints one JSON line per part."""
import argparse
import json
import time

import torch
from timing import ms_per_call
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
for k, v in dict(batch=4, seq=128, steps=5, warmup=2, prompt=16, new=32, threads=0).items():
    ap.add_argument(f"--{k}", type=int, default=v)
a = ap.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True)
config._attn_implementation = "sdpa"
model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, 32000, (a.batch, a.seq))
model.train()


def step():
    opt.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()


ms = ms_per_call(step, a.warmup, a.steps)
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"impl": "transformers+peft", "part": "train", "params": params, "batch": a.batch, "seq": a.seq,
                  "threads": torch.get_num_threads(), "ms_per_step": round(ms, 2)}))

model = model.merge_and_unload().eval()
prompt = torch.arange(100, 100 + a.prompt).unsqueeze(0)
kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
with torch.no_grad():
    model.generate(prompt, max_new_tokens=4, min_new_tokens=4, **kw)
    t = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
    s = time.perf_counter() - t
n = out.shape[1] - a.prompt
print(json.dumps({"impl": "transformers", "part": "generate", "prompt": a.prompt, "new_tokens": n,
                  "threads": torch.get_num_threads(), "tokens_per_s": round(n / s, 2)}))
