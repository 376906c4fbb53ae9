"""Training-step time in PyTorch (Python): the reference for bench/train_step.cpp. The same model,
batch, input size, optimiser and thread count: torchvision's ResNet-18/50, or transformers' ViT-B/16
(ViTModel, no pooler) with a linear head on the final-norm CLS token. Prints one JSON line.

    python bench/train_step.py [--model resnet18|resnet50|vit_b16] [--batch 16] [--size 112]
                               [--steps 20] [--warmup 5] [--threads N] [--device cpu|cuda]
                               [--dtype fp32|bf16]

--dtype bf16: forward and loss under torch.autocast(device, torch.bfloat16), backward outside it.
On CUDA the timed region is bracketed by torch.cuda.synchronize().
"""
import contextlib
import argparse
import json
import time

import torch
import torchvision


class ViTClassifier(torch.nn.Module):
    def __init__(self, size: int):
        super().__init__()
        import transformers
        config = transformers.ViTConfig(image_size=size)  # ViT-B/16 defaults
        self.vit = transformers.ViTModel(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(config.hidden_size, 10)

    def forward(self, x):
        return self.head(self.vit(pixel_values=x).last_hidden_state[:, 0])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18", choices=["resnet18", "resnet50", "vit_b16"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train_step.py: --device cuda, but no CUDA device is usable")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "vit_b16":
        net = ViTClassifier(a.size)
    else:
        net = getattr(torchvision.models, a.model)(num_classes=10)
    net.to(a.device)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch, 3, a.size, a.size).to(a.device)
    y = torch.randint(0, 10, (a.batch,)).to(a.device)

    def autocast():
        if a.dtype == "bf16":
            return torch.autocast(a.device, torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> None:
        opt.zero_grad()
        with autocast():
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    def sync() -> None:
        if a.device == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    ms = (time.perf_counter() - start) * 1000 / a.steps
    print(json.dumps({"impl": "pytorch", "model": a.model, "batch": a.batch, "size": a.size,
                      "threads": torch.get_num_threads(), "device": a.device, "dtype": a.dtype,
                      "ms_per_step": round(ms, 3), "images_per_s": round(1000 * a.batch / ms, 1)}))


if __name__ == "__main__":
    main()
