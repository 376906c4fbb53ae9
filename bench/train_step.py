"""Training-step time in PyTorch (Python): the reference for bench/train_step.cpp. The same model,
batch, input size, optimiser and thread count: torchvision's ResNet-18/50, or transformers' ViT-B/16
(ViTModel, no pooler) with a linear head on the final-norm CLS token. Prints one JSON line.

    python bench/train_step.py [--model resnet18|resnet50|vit_b16|simple_cnn] [--batch 16] [--size 112]
                               [--steps 20] [--warmup 5] [--threads N] [--device cpu|cuda]
                               [--dtype fp32|bf16] [--channels-last 0|1] [--fused 0|1]
                               [--cudnn-benchmark 0|1] [--cuda-graph 0|1] [--compile 0|1]

Without the last two flags this is PyTorch as a user runs it by default: NCHW, and SGD's default
implementation (on CPU the loop over parameters, on CUDA foreach). --channels-last 1 (model and input
to torch.channels_last) and --fused 1 (SGD(fused=True)) apply the tuning Facet applies, so the
comparison with Facet's tuned step is like for like. simple_cnn is Facet's demo model written out:
three conv3x3 (no bias) - BatchNorm - ReLU(inplace) - MaxPool2d(2) blocks of 16, 32, 64 channels,
global average pooling and a linear layer to 4 classes, on 1 x 32 x 32 inputs.

--dtype bf16: forward and loss under torch.autocast(device, torch.bfloat16), backward outside it.
On CUDA the timed region is bracketed by torch.cuda.synchronize().

GPU only: --cuda-graph 1 graphs the model with torch.cuda.make_graphed_callables (forward and
backward replayed as CUDA graphs; loss and optimiser eager, autocast's cache off as its docs ask) —
what Facet's train.cuda_graph does. --compile 1 runs torch.compile(model) (default mode; the
warm-up steps include the compilation and are not timed).
"""
import contextlib
import argparse
import json

import torch
import torchvision

from timing import ms_per_call


class ViTClassifier(torch.nn.Module):
    def __init__(self, size: int):
        super().__init__()
        import transformers
        config = transformers.ViTConfig(image_size=size)  # ViT-B/16 defaults
        self.vit = transformers.ViTModel(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(config.hidden_size, 10)

    def forward(self, x):
        return self.head(self.vit(pixel_values=x).last_hidden_state[:, 0])


def simple_cnn() -> torch.nn.Module:
    layers, c = [], 1
    for width in (16, 32, 64):
        layers += [torch.nn.Conv2d(c, width, 3, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                   torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2)]
        c = width
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Dropout(0.0),
                               torch.nn.Linear(c, 4))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18", choices=["resnet18", "resnet50", "vit_b16", "simple_cnn"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", type=int, default=0, choices=[0, 1])
    p.add_argument("--fused", type=int, default=0, choices=[0, 1])
    p.add_argument("--cudnn-benchmark", type=int, default=0, choices=[0, 1])
    p.add_argument("--cuda-graph", type=int, default=0, choices=[0, 1])
    p.add_argument("--compile", type=int, default=0, choices=[0, 1])
    a = p.parse_args()
    if (a.cuda_graph or a.compile) and a.device != "cuda":
        raise SystemExit("train_step.py: --cuda-graph and --compile are for --device cuda")
    if a.cuda_graph and a.compile:
        raise SystemExit("train_step.py: --cuda-graph and --compile are two ways of doing it: pick one")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train_step.py: --device cuda, but no CUDA device is usable")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.backends.cudnn.benchmark = bool(a.cudnn_benchmark)
    torch.manual_seed(0)
    if a.model == "vit_b16":
        net = ViTClassifier(a.size)
    elif a.model == "simple_cnn":
        net = simple_cnn()
    else:
        net = getattr(torchvision.models, a.model)(num_classes=10)
    net.to(a.device)
    net.train()
    channels, classes = (1, 4) if a.model == "simple_cnn" else (3, 10)
    x = torch.randn(a.batch, channels, a.size, a.size).to(a.device)
    y = torch.randint(0, classes, (a.batch,)).to(a.device)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, **({"fused": True} if a.fused else {}))

    def autocast():
        if a.dtype == "bf16":
            return torch.autocast(a.device, torch.bfloat16, cache_enabled=not a.cuda_graph)
        return contextlib.nullcontext()

    if a.cuda_graph:
        with autocast():
            net = torch.cuda.make_graphed_callables(net, (x,))
    elif a.compile:
        net = torch.compile(net)

    def step() -> None:
        opt.zero_grad()
        with autocast():
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    def sync() -> None:
        if a.device == "cuda":
            torch.cuda.synchronize()

    ms = ms_per_call(step, a.warmup, a.steps, sync)
    print(json.dumps({"impl": "pytorch", "model": a.model, "batch": a.batch, "size": a.size,
                      "threads": torch.get_num_threads(), "device": a.device, "dtype": a.dtype,
                      "channels_last": bool(a.channels_last), "fused": bool(a.fused),
                      "cuda_graph": bool(a.cuda_graph), "compile": bool(a.compile),
                      "ms_per_step": round(ms, 3), "images_per_s": round(1000 * a.batch / ms, 1)}))


if __name__ == "__main__":
    main()
