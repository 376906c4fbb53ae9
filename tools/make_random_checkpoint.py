#!/usr/bin/env python3
"""Random weights of a Facet `vit` model as a sharded safetensors checkpoint, written tensor by tensor.

For exercising the streaming loader at a scale that does not fit twice in memory: the 7-billion-
parameter configuration (embed_dim 4096, depth 32, 32 heads, mlp ratio 4) is 12.9 GB in bf16, and
this script never holds more than one tensor (at most 134 MB there) — it writes each shard's header
first, then each tensor's bytes as soon as they are drawn, so a checkpoint of any size is written in
the memory of its largest tensor (safetensors.torch.save_file would need the whole shard, twice).

    python tools/make_random_checkpoint.py --out weights/vit_7b --embed-dim 4096 --depth 32 --num-heads 32
    facet summary experiments/scale/vit_7b_bf16.yaml --dtype bfloat16 --defer-init --weights --no-forward

Layout (--layout): `facet` (default) names the tensors as the registered `vit` model does
(vit.blocks.N.attn.qkv.weight, ..., head.weight), so an init_weights entry loads it as it is;
`timm` writes the bare ViT (blocks.N..., no head) as MAE / timm checkpoints are, for `convert: timm_vit`.
Files: model-0000i-of-0000N.safetensors (shards of at most --shard-gb of tensor data) and
model.safetensors.index.json, as transformers writes them; every value is drawn from a CPU generator
seeded with seed + the tensor's index, so the contents do not depend on the sharding.
Uses the project venv's torch (tools/bootstrap.sh); the format is written here, not by safetensors.
"""
import argparse
import json
import os
import struct
import sys
import time

import torch

DTYPES = {"bf16": (torch.bfloat16, "BF16", 2), "fp16": (torch.float16, "F16", 2), "fp32": (torch.float32, "F32", 4)}


def vit_tensors(a):
    """(name, shape, kind) of the registered `vit` model (models/backbones/vit.cpp), in module order."""
    d, grid = a.embed_dim, a.image_size // a.patch_size
    hidden = round(d * a.mlp_ratio)
    p = "vit." if a.layout == "facet" else ""
    out = [(p + "patch_embed.proj.weight", [d, a.in_channels, a.patch_size, a.patch_size], "weight"),
           (p + "patch_embed.proj.bias", [d], "bias"),
           (p + "cls_token", [1, 1, d], "embedding"),
           (p + "pos_embed", [1, 1 + grid * grid, d], "embedding")]
    for i in range(a.depth):
        b = f"{p}blocks.{i}."
        out += [(b + "norm1.weight", [d], "norm"), (b + "norm1.bias", [d], "bias"),
                (b + "attn.qkv.weight", [3 * d, d], "weight")]
        if a.qkv_bias:
            out.append((b + "attn.qkv.bias", [3 * d], "bias"))
        out += [(b + "attn.proj.weight", [d, d], "weight"), (b + "attn.proj.bias", [d], "bias"),
                (b + "norm2.weight", [d], "norm"), (b + "norm2.bias", [d], "bias"),
                (b + "mlp.fc1.weight", [hidden, d], "weight"), (b + "mlp.fc1.bias", [hidden], "bias"),
                (b + "mlp.fc2.weight", [d, hidden], "weight"), (b + "mlp.fc2.bias", [d], "bias")]
    out += [(p + "norm.weight", [d], "norm"), (p + "norm.bias", [d], "bias")]
    if a.layout == "facet" and a.num_classes > 0:
        out += [("head.weight", [a.num_classes, d], "weight"), ("head.bias", [a.num_classes], "bias")]
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def draw(kind, shape, dtype, seed):
    """Values of the ViT's own initialisation's scale: N(0, 0.02) matrices and tables, zero biases, unit norms."""
    if kind == "norm":
        return torch.ones(shape, dtype=dtype)
    if kind == "bias":
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    return torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=g)


def header_bytes(entries, dtype_name):
    """The safetensors header: u64 little-endian size, then JSON padded with spaces to 8 bytes."""
    meta = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _, _ in entries:
        size = numel(shape) * DTYPES_BY_NAME[dtype_name]
        meta[name] = {"dtype": dtype_name, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(meta, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offset


DTYPES_BY_NAME = {v[1]: v[2] for v in DTYPES.values()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory to write (created)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--patch-size", type=int, default=16)
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--embed-dim", type=int, default=768)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--num-heads", type=int, default=12)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--no-qkv-bias", dest="qkv_bias", action="store_false")
    ap.add_argument("--num-classes", type=int, default=1000, help="the head of the `vit` model (facet layout)")
    ap.add_argument("--layout", choices=["facet", "timm"], default="facet")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--shard-gb", type=float, default=2.0, help="tensor data per shard, GB (10^9 bytes)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.embed_dim % a.num_heads:
        sys.exit(f"--embed-dim {a.embed_dim} is not a multiple of --num-heads {a.num_heads}")
    if a.image_size % a.patch_size:
        sys.exit(f"--image-size {a.image_size} is not a multiple of --patch-size {a.patch_size}")
    dtype, dtype_name, width = DTYPES[a.dtype]
    tensors = [(n, s, k, i) for i, (n, s, k) in enumerate(vit_tensors(a))]
    total = sum(numel(s) for _, s, _, _ in tensors)

    # Shards in module order, each at most shard-gb of data (a larger tensor gets one of its own).
    limit = int(a.shard_gb * 1e9)
    shards, current, size = [], [], 0
    for t in tensors:
        b = numel(t[1]) * width
        if current and size + b > limit:
            shards.append(current)
            current, size = [], 0
        current.append(t)
        size += b
    shards.append(current)

    os.makedirs(a.out, exist_ok=True)
    print(f"{total:,} parameters ({total * width / 1e9:.2f} GB in {a.dtype}), {len(tensors)} tensors, "
          f"{len(shards)} shard(s) -> {a.out}", flush=True)
    start = time.time()
    weight_map = {}
    for k, entries in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        path = os.path.join(a.out, name)
        head, data_bytes = header_bytes(entries, dtype_name)
        with open(path + ".tmp", "wb") as f:
            f.write(head)
            for tname, shape, kind, index in entries:
                t = draw(kind, shape, dtype, a.seed + index)
                f.write(t.contiguous().view(torch.uint8).numpy().data)  # the bytes as they are, no copy
                weight_map[tname] = name
                del t
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        print(f"  {name}: {len(entries)} tensors, {data_bytes / 1e9:.2f} GB ({time.time() - start:.0f} s)", flush=True)
    index = {"metadata": {"total_size": total * width}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
