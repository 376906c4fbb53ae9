"""Shared by the golden generators: writing safetensors files that are byte-identical from run to run."""
import json
import struct

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def save(tensors: dict, path: str, metadata: dict) -> None:
    """save_file, then rewrite the header with __metadata__'s keys sorted.

    safetensors writes __metadata__ from a Rust HashMap, so its key order changes from run to run;
    the rewrite keeps every other byte, so reruns of a generator give identical files.
    """
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    raw = blob[8:8 + n]
    header = json.loads(raw)
    canon = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))}
    canon.update(header)
    text = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(text) == len(raw.rstrip(b" ")), "header re-serialisation changed its length"
    text += b" " * (n - len(text))
    with open(path, "wb") as f:
        f.write(blob[:8] + text + blob[8 + n:])
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == metadata
        assert sorted(f.keys()) == sorted(tensors)
        for k in f.keys():
            assert torch.equal(f.get_tensor(k), tensors[k]), k
