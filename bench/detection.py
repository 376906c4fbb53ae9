"""torchvision's side of bench/detection.cpp: the same inputs, settings and threads. One JSON line.

  python bench/detection.py --what nms|roi_align|faster_rcnn [--boxes 12000] [--rois 1024] [--batch 2]
                            [--size 512] [--steps 5] [--warmup 2] [--threads N] [--device cpu|cuda]
"""
import argparse
import json
import time

import torch
import torchvision
from torchvision.models.detection import fasterrcnn_resnet50_fpn


def clustered_boxes(n, size, device):
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(n // 20 + 1, 2, generator=g) * size
    c = centres.repeat_interleave(20, 0)[:n] + torch.randn(n, 2, generator=g) * 8
    wh = 16 + torch.rand(n, 2, generator=g) * 64
    return torch.cat([c - wh / 2, c + wh / 2], 1).to(device), (torch.randperm(n, generator=g).float() / n).to(device)


def main():
    p = argparse.ArgumentParser()
    for name, default in [("boxes", 12000), ("rois", 1024), ("batch", 2), ("size", 512), ("steps", 5), ("warmup", 2), ("threads", 0)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--what", default="nms")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    kept = [None]
    if a.what == "nms":
        bx, sc = clustered_boxes(a.boxes, 800, dev)

        def step():
            kept[0] = torchvision.ops.nms(bx, sc, 0.7)
    elif a.what == "roi_align":
        x = torch.randn(a.batch, 256, a.size // 4, a.size // 4, device=dev, requires_grad=True)
        bx, _ = clustered_boxes(a.rois, float(a.size), dev)
        idx = torch.randint(0, a.batch, (a.rois, 1), device=dev).float()
        rois = torch.cat([idx, bx], 1)

        def step():
            x.grad = None
            torchvision.ops.roi_align(x, rois, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False).sum().backward()
    elif a.what == "faster_rcnn":
        # Without weights the trunk keeps trainable BatchNorm2d (as Facet's); the transform's resize is a
        # no-op at min_size = max_size = size.
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, trainable_backbone_layers=5,
                                        min_size=a.size, max_size=a.size).to(dev)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = list(torch.rand(a.batch, 3, a.size, a.size, device=dev))
        box = torch.tensor([[50.0, 60, 150, 140], [200, 220, 260, 300], [300, 100, 420, 180]], device=dev) * (a.size / 512)
        targets = [{"boxes": box, "labels": torch.ones(3, dtype=torch.int64, device=dev)} for _ in range(a.batch)]

        def step():
            opt.zero_grad()
            sum(model(images, targets).values()).backward()
            opt.step()
    else:
        raise SystemExit(f"unknown --what {a.what}")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    ms = (time.perf_counter() - start) * 1000 / a.steps
    print(json.dumps({"what": a.what, "ms_per_step": round(ms, 3), "kept": -1 if kept[0] is None else len(kept[0]),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
