"""Forward + backward time of the PyTorch transcription of the released A3D + SATr backbone
(tools/golden/a3d_golden.py: same modules and arithmetic as MIRACLE-Center/A3D_SATr Trans_with_A3D),
the counterpart of bench/a3d_satr.cpp. Prints one JSON line.
  python bench/a3d_satr.py [--size 512] [--slices 7] [--batch 1] [--satr 1] [--steps 2] [--warmup 1] [--threads N]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "golden"))
from a3d_golden import A3DSATr  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    for name, default in (("size", 512), ("slices", 7), ("batch", 1), ("satr", 1), ("steps", 2), ("warmup", 1), ("threads", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = A3DSATr(a.slices, 512, (bool(a.satr),) * 3)
    net.train()
    x = torch.randn(a.batch, a.slices, a.size, a.size)

    def step():
        net.zero_grad()
        net(x)[0].square().mean().backward()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    ms = (time.perf_counter() - start) * 1000 / a.steps
    print(json.dumps({"impl": "pytorch", "model": "a3d_satr" if a.satr else "a3d", "batch": a.batch, "slices": a.slices,
                      "size": a.size, "threads": torch.get_num_threads(), "ms_per_step": round(ms, 3)}))


if __name__ == "__main__":
    main()
