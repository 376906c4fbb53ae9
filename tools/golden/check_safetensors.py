"""Checks a safetensors file (or sharded directory) Facet wrote: the Python `safetensors` library must
read it and find exactly safetensors_golden.expected(), with metadata {"format": "pt"}.

Usage: check_safetensors.py PATH      (exit 0 when everything matches)
"""
import json
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_golden import expected  # noqa: E402


def load(path: str) -> dict:
    files = [path]
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        with open(index) as f:
            files = sorted({os.path.join(path, s) for s in json.load(f)["weight_map"].values()})
    out = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            assert f.metadata() == {"format": "pt"}, f"{file}: metadata {f.metadata()}"
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def main(path: str) -> int:
    got, want = load(path), expected()
    assert sorted(got) == sorted(want), f"names differ: {sorted(got)} vs {sorted(want)}"
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype} vs {w.dtype}"
        assert g.shape == w.shape, f"{name}: shape {tuple(g.shape)} vs {tuple(w.shape)}"
        assert torch.equal(g, w), f"{name}: values differ"
    print(f"ok: {len(got)} tensors match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
