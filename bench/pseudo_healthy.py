"""One GVS training step as the reference's main.py runs it (github.com/Au3C2/GVS), the counterpart of
bench/pseudo_healthy.cpp: the same networks at the published widths (tools/golden/pseudo_healthy_golden.py's
PyTorch modules), optimizer_R.zero_grad, G, S on its output, the three losses, backward, Adam on G; then
optimizer_S.zero_grad, S on the detached output, the weighted CE, backward, Adam on S. Each image's own
mask and normal-tissue mean, as Facet computes them. Prints one JSON line.
  python bench/pseudo_healthy.py [--size 128] [--batch 2] [--steps 3] [--warmup 1] [--threads N]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

from timing import ms_per_call

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "golden"))
from pseudo_healthy_golden import ResnetGenerator, UNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    for name, default in (("size", 128), ("batch", 2), ("steps", 3), ("warmup", 1), ("threads", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    G, S = ResnetGenerator(), UNet()
    G.train()
    S.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.9, 0.99))
    opt_s = torch.optim.Adam(S.parameters(), lr=1e-3, betas=(0.9, 0.99))
    n, b = a.size, a.batch
    yy, xx = torch.arange(n).view(-1, 1).float(), torch.arange(n).view(1, -1).float()
    brain = (((yy - n // 2) ** 2 + (xx - n // 2) ** 2) < n * n // 5).float()
    lesion = (((yy - n // 3) ** 2 + (xx - n // 2) ** 2) < n * n // 64).float()
    x = torch.randn(b, 1, n, n) * brain + lesion * 2
    mask = lesion.expand(b, 1, n, n).contiguous()
    brain = brain.expand(b, 1, n, n).contiguous()
    healthy = torch.zeros(b, n, n, dtype=torch.long)

    def step():
        opt_g.zero_grad()
        y = G(x)
        logits = S(y)
        normal = (1 - mask) * brain
        mu = ((x * normal).flatten(1).sum(1) / normal.flatten(1).sum(1).clamp_min(1)).view(-1, 1, 1, 1)
        loss = (F.cross_entropy(logits, healthy) + 10 * ((y - x) ** 2 * (1 - mask)).mean()
                + 5 * ((y - mu) ** 2 * mask).mean())
        loss.backward()
        opt_g.step()
        opt_s.zero_grad()
        y = y.detach()
        logits = S(y)
        diff = (y - x).abs().sum(1)
        weight = (1 - diff / diff.flatten(1).amax(1).view(-1, 1, 1)).clamp_min(0.1)
        (F.cross_entropy(logits, mask[:, 0].long(), reduction="none") * weight).mean().backward()
        opt_s.step()

    ms = ms_per_call(step, a.warmup, a.steps)
    print(json.dumps({"impl": "pytorch", "model": "gvs", "batch": b, "size": n, "threads": torch.get_num_threads(),
                      "ms_per_step": round(ms, 3)}))


if __name__ == "__main__":
    main()
