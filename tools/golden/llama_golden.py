"""Golden outputs of transformers' LlamaForCausalLM / MistralForCausalLM on tiny random configurations,
for Facet's decoder, KV-cache and generation parity tests (tests/llm/test_llama.cpp).

Each model is saved with save_pretrained (config.json + safetensors, the GQA one sharded so the
index path is exercised) under tests/fixtures/llm/<name>/, with golden.safetensors beside it:
  input_ids [2, 12] int64, logits [2, 12, V] float32 (no mask, eager attention, fp32);
  padded_input_ids / padded_attention_mask [2, 12] (row 1 left-padded by 5), padded_logits;
  greedy_0 / greedy_1: generate(max_new_tokens=10, do_sample=False, eos 2, pad 0) of each unpadded prompt alone,
    new tokens only; greedy_batch [2, 10]: the left-padded batch generated together.
Weights: transformers' init replaced by a seeded one with unit-scale activations (std 1/sqrt(fan_in)
for matrices, 1 +- 0.1 for norms, 1.0 for embeddings, 0.3 when tied to the head) so logits are not all near zero and greedy
choices are not ties.

logits_processors.safetensors: HF's repetition penalty (1.3) -> temperature (0.7) -> top-k (10) ->
top-p (0.8) on seeded logits [3, 40] with input_ids [3, 7]; each stage's output ("after_rep",
"after_temp", "after_topk", "after_topp"; -inf where removed).

Run with the project's venv python: tools/golden/llama_golden.py
"""
import json
import math
import os
import shutil

import torch
import transformers
from golden_io import save
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "llm")
torch.set_num_threads(1)

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CONFIGS = {
    # multi-head attention, untied head, default RoPE
    "tiny_llama_mha": (LlamaConfig, LlamaForCausalLM,
                       dict(COMMON, num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=False,
                            rope_theta=10000.0), None),
    # grouped-query attention (4 query heads, 2 KV heads), tied embeddings, llama3 RoPE scaling, sharded
    "tiny_llama_gqa": (LlamaConfig, LlamaForCausalLM,
                       dict(COMMON, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=True,
                            rope_theta=500000.0,
                            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=16)),
                       "40KB"),
    # Mistral: GQA with a sliding window shorter than the prompts
    "tiny_mistral": (MistralConfig, MistralForCausalLM,
                     dict(COMMON, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
                          rope_theta=10000.0, sliding_window=5), None),
}


def seeded_init(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                # tied to the head: a smaller scale, or every step re-picks the input token
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if model.config.tie_word_embeddings else 1.0))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))


def greedy(model, ids, mask=None, n=10):
    out = model.generate(input_ids=ids, attention_mask=mask if mask is not None else torch.ones_like(ids),
                         max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=2)
    return out[:, ids.shape[1]:]


def make(name, config_class, model_class, kwargs, shard):
    config = config_class(**kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = model_class(config).eval()
    seeded_init(model, 1)
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, **({"max_shard_size": shard} if shard else {}))
    # the loaded copy is what is compared (what Facet reads)
    model = model_class.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 96, (2, 12), generator=g)
    padded = ids.clone()
    mask = torch.ones_like(ids)
    padded[1, :5] = 0
    mask[1, :5] = 0
    padded[1, 5:] = ids[1, :7]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        padded_logits = model(input_ids=padded, attention_mask=mask).logits
        out = {
            "input_ids": ids, "logits": logits,
            "padded_input_ids": padded, "padded_attention_mask": mask, "padded_logits": padded_logits,
            "greedy_0": greedy(model, ids[:1])[0], "greedy_1": greedy(model, ids[1:, :7])[0],
            "greedy_batch": greedy(model, padded, mask),
        }
    n_params = sum(p.numel() for p in model.parameters())
    save(out, os.path.join(d, "golden.safetensors"),
         {"source": f"transformers {transformers.__version__} {model_class.__name__}", "num_parameters": str(n_params)})
    assert torch.equal(out["greedy_batch"][0], out["greedy_0"])
    print(name, n_params, "params; greedy_0", out["greedy_0"].tolist(), "batch", out["greedy_batch"].tolist())


def processors():
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(3, 40, generator=g)
    ids = torch.randint(0, 40, (3, 7), generator=g)
    out = {"logits": logits, "input_ids": ids}
    s = RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    out["after_rep"] = s
    s = TemperatureLogitsWarper(0.7)(ids, s.clone())
    out["after_temp"] = s
    s = TopKLogitsWarper(10)(ids, s.clone())
    out["after_topk"] = s
    s = TopPLogitsWarper(0.8)(ids, s.clone())
    out["after_topp"] = s
    save(out, os.path.join(OUT, "logits_processors.safetensors"),
         {"source": f"transformers {transformers.__version__}", "settings": json.dumps(
             {"repetition_penalty": 1.3, "temperature": 0.7, "top_k": 10, "top_p": 0.8})})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, (cc, mc, kw, shard) in CONFIGS.items():
        make(name, cc, mc, kw, shard)
    processors()
