#!/usr/bin/env python3
"""Convert PyTorch pickle checkpoints (.bin / .pth / .pt, single or sharded) to safetensors, names
preserved, so Facet itself never unpickles (unpickling runs arbitrary code).

  convert_pickle_to_safetensors.py INPUT OUT [--key model] [--max-shard-size 5GB] [--unsafe]

INPUT: a checkpoint file, a *.bin.index.json (transformers' sharded pytorch_model-0000N-of-0000M.bin),
or a directory holding pytorch_model.bin[.index.json]. Nested checkpoints such as MiniGPT-v2's
checkpoint_stage3.pth ({"model": state_dict, "optimizer": ..., "epoch": ...}) or LAVIS/LLaVA
projector files ({"state_dict": ...}) are unwrapped: --key picks the entry, else the single entry
among model / state_dict / module / params that is a dict of tensors. Non-tensor values are
listed and left out. Tensors sharing storage (tied embeddings) are written as separate copies.

OUT: a directory. One model.safetensors when everything fits in --max-shard-size, else
model-0000N-of-0000M.safetensors + model.safetensors.index.json (transformers' layout), which
`facet inspect` and train.init_weights read. Sharded inputs are converted shard by shard, so memory
stays at about one input shard.

Loading uses torch.load(weights_only=True, mmap=True); --unsafe allows full unpickling for files that
need it (e.g. checkpoints holding an OmegaConf config) — only for files you trust.
"""
import argparse
import json
import os
import re
import sys

import torch
from safetensors.torch import save_file

WRAPPERS = ("model", "state_dict", "module", "params")


def parse_size(text):
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?B?)\s*", text.upper())
    if not m:
        raise SystemExit(f"--max-shard-size: cannot read {text!r} (e.g. 5GB, 500MB)")
    unit = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12}[m.group(2)]
    return int(float(m.group(1)) * unit)


def load(path, unsafe):
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe, mmap=True)
    except RuntimeError:  # mmap needs the zip format; older files are read whole
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as e:  # noqa: BLE001 - the message says what to do
        if not unsafe and "weights_only" in str(e):
            raise SystemExit(f"{path}: holds objects other than tensors ({str(e).splitlines()[0]}); "
                             "rerun with --unsafe if you trust the file")
        raise


def flatten(obj, prefix=""):
    """Tensors of a (possibly nested) dict, dotted names; and the names of what is not a tensor."""
    tensors, dropped = {}, []
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            tensors[name] = v
        elif isinstance(v, dict):
            t, d = flatten(v, name + ".")
            tensors.update(t)
            dropped += d
        else:
            dropped.append(f"{name} ({type(v).__name__})")
    return tensors, dropped


def state_dict_of(obj, key, path):
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    if key:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                raise SystemExit(f"{path}: no entry {part!r} (--key {key}); top-level keys: {sorted(obj)[:20]}")
            obj = obj[part]
        return obj, []
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, []
    found = [k for k in WRAPPERS if isinstance(obj.get(k), dict)]
    if len(found) == 1:
        return obj[found[0]], [f"{k} ({type(v).__name__})" for k, v in obj.items() if k != found[0]]
    raise SystemExit(f"{path}: no tensors at the top level and no single wrapper among {WRAPPERS}; "
                     f"choose one with --key (top-level keys: {sorted(obj)[:20]})")


def inputs_of(path):
    if os.path.isdir(path):
        for name in ("pytorch_model.bin.index.json", "pytorch_model.bin", "model.bin", "model.pth"):
            if os.path.exists(os.path.join(path, name)):
                return inputs_of(os.path.join(path, name))
        raise SystemExit(f"{path}: no pytorch_model.bin[.index.json] in the directory; give the file")
    if path.endswith(".index.json"):
        with open(path) as f:
            weight_map = json.load(f)["weight_map"]
        base = os.path.dirname(path)
        return [os.path.join(base, s) for s in sorted(set(weight_map.values()))]
    return [path]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--key", help="dotted entry holding the state dict (e.g. model)")
    ap.add_argument("--max-shard-size", default="5GB")
    ap.add_argument("--unsafe", action="store_true", help="allow full unpickling (trusted files only)")
    a = ap.parse_args(argv)
    limit = parse_size(a.max_shard_size)
    os.makedirs(a.out, exist_ok=True)

    shards, current, current_bytes, weight_map, total, count = [], {}, 0, {}, 0, 0

    def flush():
        nonlocal current, current_bytes
        if current:
            shards.append(list(current))
            tmp = os.path.join(a.out, f".shard-{len(shards):05d}.safetensors")
            save_file(current, tmp, metadata={"format": "pt"})
            current, current_bytes = {}, 0

    seen = set()
    for path in inputs_of(a.input):
        obj = load(path, a.unsafe)
        sd, dropped = state_dict_of(obj, a.key, path)
        tensors, more = flatten(sd)
        for d in dropped + more:
            print(f"{path}: left out {d}", file=sys.stderr)
        storages = set()
        for name, t in tensors.items():
            if name in seen:
                raise SystemExit(f"{path}: {name} appears in two input files")
            seen.add(name)
            t = t.detach()
            ptr = t.untyped_storage().data_ptr()
            t = t.contiguous().clone() if ptr in storages or not t.is_contiguous() else t.contiguous()
            storages.add(ptr)
            nbytes = t.numel() * t.element_size()
            if current and current_bytes + nbytes > limit:
                flush()
            current[name] = t
            current_bytes += nbytes
            total += nbytes
            count += 1
        del obj
    flush()
    if not shards:
        raise SystemExit(f"{a.input}: no tensors found")
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for i, (shard, name) in enumerate(zip(shards, names)):
        os.replace(os.path.join(a.out, f".shard-{i + 1:05d}.safetensors"), os.path.join(a.out, name))
        for k in shard:
            weight_map[k] = name
    if n > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    print(f"wrote {count} tensors ({total / 1e6:.1f} MB) to {a.out} in {n} file(s)")


if __name__ == "__main__":
    main()
