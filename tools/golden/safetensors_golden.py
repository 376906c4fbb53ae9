"""Golden safetensors files written by the Python `safetensors` library, read by Facet's tests.

Writes under tests/fixtures/safetensors/:
  all_dtypes.safetensors   one small tensor of every dtype Facet reads (values from expected()),
                           plus a 0-d scalar and an empty tensor; metadata {"format": "pt"}
  sharded/                 the same tensors split over two shards with a transformers-style
                           model.safetensors.index.json
  extra_dtypes.safetensors unsigned, complex and float8 tensors (extra_dtypes()), no metadata
  escaped_names.safetensors
                           names and a metadata value that need JSON escaping (escaped_names(),
                           ESCAPED_METADATA), to pin the writer's escaping to serde_json's

Run `make goldens` (or this script with the project's venv python) to regenerate. check_safetensors.py
uses expected() to verify a file Facet wrote.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "safetensors")


def expected() -> dict:
    """The deterministic tensors every golden holds; tests/core/test_safetensors.cpp builds the same."""
    base = torch.arange(6, dtype=torch.float64).reshape(2, 3) / 4 - 0.5
    return {
        "f64": base,
        "f32": base.to(torch.float32) * 3,
        "f16": base.to(torch.float16) * 5,
        "bf16": base.to(torch.bfloat16) * 7,
        "i64": torch.arange(-3, 3, dtype=torch.int64) * 1_000_000_007,
        "i32": torch.arange(-3, 3, dtype=torch.int32) * 100_003,
        "i16": torch.arange(-3, 3, dtype=torch.int16) * 1_001,
        "i8": torch.arange(-3, 3, dtype=torch.int8) * 11,
        "u8": torch.arange(0, 250, 50, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "nested.name.weight": torch.ones(2, 2, dtype=torch.float32),
    }


def extra_dtypes() -> dict:
    """Every other dtype LibTorch and the Python library share (F8_E8M0 and the sub-byte F4/F6 are
    not in safetensors 0.8's torch mapping); u64 holds 2**64 - 1 through an int64 view of -1."""
    small = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0])
    return {
        "u16": torch.tensor([0, 1, 1000, 40_000, 65_535]).to(torch.uint16),
        "u32": torch.tensor([0, 1, 70_000, 2**31 + 5, 2**32 - 1]).to(torch.uint32),
        "u64": torch.tensor([0, 1, 2**33, 2**62 + 7, -1]).view(torch.uint64),
        "c64": torch.view_as_complex(torch.arange(8, dtype=torch.float32).reshape(4, 2) - 3),
        "f8_e4m3": small.to(torch.float8_e4m3fn),
        "f8_e5m2": small.to(torch.float8_e5m2),
        "f8_e4m3fnuz": small.to(torch.float8_e4m3fnuz),
        "f8_e5m2fnuz": small.to(torch.float8_e5m2fnuz),
    }


ESCAPED_NAMES = ['quote"', "back\\slash", "tab\tnew\nline", "ctrl\x01\x1f", "del\x7f", "ünïcödé/ø", "\U0001F600"]
ESCAPED_METADATA = {"note": 'a "quoted" \\ line\nwith \x02 and é'}


def escaped_names() -> dict:
    """Tensor i (float32 [2], filled with i) under the i-th of ESCAPED_NAMES."""
    return {name: torch.full((2,), float(i)) for i, name in enumerate(ESCAPED_NAMES)}


def main() -> int:
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    tensors = expected()
    save_file(tensors, os.path.join(OUT, "all_dtypes.safetensors"), metadata={"format": "pt"})

    names = sorted(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for i, part in enumerate(halves):
        file = f"model-{i + 1:05d}-of-{len(halves):05d}.safetensors"
        save_file({n: tensors[n] for n in part}, os.path.join(OUT, "sharded", file), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = file
            total += tensors[n].numel() * tensors[n].element_size()
    with open(os.path.join(OUT, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(extra_dtypes(), os.path.join(OUT, "extra_dtypes.safetensors"))
    save_file(escaped_names(), os.path.join(OUT, "escaped_names.safetensors"), metadata=ESCAPED_METADATA)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
