"""Training-step time of torchvision's ResNet-18 in PyTorch (Python): the reference for
bench/train_step.cpp. Same model, batch, input size, optimiser and thread count. Prints one JSON line.

    python bench/train_step.py [--batch 16] [--size 112] [--steps 20] [--warmup 5] [--threads N]
"""
import argparse
import json
import time

import torch
import torchvision


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, 10, (a.batch,))

    def step() -> None:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    ms = (time.perf_counter() - start) * 1000 / a.steps
    print(json.dumps({"impl": "pytorch", "model": "resnet18", "batch": a.batch, "size": a.size,
                      "threads": torch.get_num_threads(), "ms_per_step": round(ms, 3)}))


if __name__ == "__main__":
    main()
