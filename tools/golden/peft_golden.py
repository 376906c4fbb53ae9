"""PEFT LoRA goldens and checks for Facet's PEFT-layout adapters (tests/llm/test_peft.cpp).

Golden (run once, writes tests/fixtures/llm/peft_lora/): a PEFT LoraConfig(r=4, lora_alpha=8,
target_modules=[q_proj, v_proj, down_proj]) on tests/fixtures/llm/tiny_llama_mha with seeded random A and B
(PEFT would start B at zero, which proves nothing), saved with save_pretrained (adapter_model.safetensors +
adapter_config.json), and expected.safetensors: input_ids [2, 9] and the adapted model's logits.

Check (the test calls it through FACET_PYTHON): `peft_golden.py check <base dir> <adapter dir> <inputs>`
loads the base with transformers, the adapter with PeftModel.from_pretrained, runs input_ids from
<inputs> (a safetensors file that also holds Facet's "logits") and exits 0 when the max |diff| < 1e-5.
"""
import json
import os
import shutil
import sys

import peft
import torch
from golden_io import save
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "..", "tests", "fixtures", "llm")
torch.set_num_threads(1)


def base(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def golden():
    out = os.path.join(FIX, "peft_lora")
    shutil.rmtree(out, ignore_errors=True)
    model = get_peft_model(base(os.path.join(FIX, "tiny_llama_mha")),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                                      task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))
    path = os.path.join(out, "adapter_config.json")  # no absolute path of this machine in the fixture
    with open(path) as f:
        config = json.load(f)
    config["base_model_name_or_path"] = "tests/fixtures/llm/tiny_llama_mha"
    config["target_modules"] = sorted(config["target_modules"])  # PEFT writes a set, in hash order
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    ids = torch.randint(3, 96, (2, 9), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save({"input_ids": ids, "logits": logits}, os.path.join(out, "expected.safetensors"), {"peft": peft.__version__})
    print("wrote", out, sorted(os.listdir(out)))


def check(base_dir, adapter_dir, inputs):
    t = load_file(inputs)
    model = PeftModel.from_pretrained(base(base_dir), adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=t["input_ids"]).logits
    err = (logits - t["logits"]).abs().max().item()
    print(f"PEFT vs Facet logits max |diff| {err:.3g}")
    return 0 if err < 1e-5 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:5]))
    golden()
