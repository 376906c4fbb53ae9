"""Golden outputs of the truncated A3D DenseNet-121 with and without SATr blocks, for Facet's parity tests.

The reference is the released SATr code (MIRACLE-Center/A3D_SATr, nn/models/truncated_densenet3d_a3d.py:
DenseNetCustomTrunc3dA3D = "A3D", Trans_with_A3D = "A3D + SATr"; nn/operators/a3dconv.py), which
needs mmdetection 1.x and CUDA to import. This file is an independent PyTorch transcription of it
(facts: ../shared/research/medical.md §3.2) with the released module and parameter names, so that
released checkpoints load into either side by name. It follows the released configuration
deeplesion/mconfigs/densenet_a3d.py: Fusion_manner 0, Sep_pre_Conv 0, Unet_FPN 0,
Trans_thick_aware 0, n_cts = NUM_SLICES, out_dim = 512, fpn_finest_layer = 2; SyncBN is plain
BatchNorm3d on one process (the same arithmetic). Where the release hard-codes 7 slices (the Q/K
Linear over 6 neighbours, the key slice at index 3), the transcription writes S - 1 and S // 2, which
are the same numbers for S = 7.

`--released DIR` (a checkout of A3D_SATr) additionally imports the released classes with mmdet
stubbed out and checks that they produce the same state_dict names and shapes, parameter count and
outputs as the transcription (on CPU, by replacing the released `.cuda()` call).

Weights: the "facet-golden-init-v1" protocol of backbones_golden.py (no weights stored). The forward
runs in eval mode (BatchNorm running statistics, no drop path) with torch.set_num_threads(1).

Writes tests/fixtures/a3d/ (float32):
  a3d_satr.safetensors   SATr on all three stages, S = 7, input [1, 7, 64, 96] (seed 7):
                         "input", "out_head" = output[:, :16] [1, 16, 16, 24], "out_channel_mean" [512]
                         (mean over H, W), "out_spatial_mean" [16, 24] (mean over channels),
                         "tokens1".."tokens3" [1, 1 + 6, 384] (each SATr block's output tokens),
                         "redc1".."redc3" channel means [C_s] of the fused stage maps
  a3d.safetensors        A3D without SATr, same input and output summaries
  a3d_satr_stage2.safetensors   SATr on stage 2 only (the zero CLS token starts there)
  metadata: protocol, num_parameters (this configuration, S = 7 and out_dim 512: the paper's),
  state_dict_shapes, satr_stages; a3d.safetensors also torchvision_densenet121_shapes (the names
  and shapes of torchvision's densenet121 state dict, for the ImageNet converter's test)
"""
import argparse
import json
import math
import os
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F
from golden_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "a3d")
sys.path.insert(0, HERE)
from backbones_golden import golden_init  # noqa: E402  (the shared weights protocol)

EMBED = 384
HEADS = 6
PATCH = (8, 4, 2)


class A3DConv(nn.Module):
    """A k x k convolution applied to every slice, after a learned S x S slice mixing per input channel."""

    def __init__(self, cin, cout, k, stride=1, padding=0, bias=False, mix=True, slices=3):
        super().__init__()
        self.stride, self.padding, self.mix = stride, padding, mix
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        # The release registers the mixing tensor on every A3D convolution, with its default
        # dimension 3 where none is passed (conv0, transitions), even where it is not applied.
        self.adaptive_align_weights = nn.Parameter(torch.eye(slices).unsqueeze(-1).repeat(1, 1, cin))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):  # [B, C, S, H, W]
        if self.mix:
            x = torch.einsum("bcdhw,dkc->bckhw", x, self.adaptive_align_weights)
        return F.conv3d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride, self.stride),
                        (0, self.padding, self.padding))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size, slices):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(cin)
        self.conv1 = A3DConv(cin, bn_size * growth, 1, mix=True, slices=slices)
        self.norm2 = nn.BatchNorm3d(bn_size * growth)
        self.conv2 = A3DConv(bn_size * growth, growth, 3, padding=1, mix=True, slices=slices)

    def forward(self, features):
        y = self.conv1(F.relu(self.norm1(torch.cat(features, 1))))
        return self.conv2(F.relu(self.norm2(y)))


class DenseBlock(nn.Module):
    def __init__(self, layers, cin, growth, bn_size, slices):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size, slices))

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.BatchNorm3d(cin)
        self.conv = A3DConv(cin, cout, 1, mix=False)

    def forward(self, x):
        return F.avg_pool3d(self.conv(F.relu(self.norm(x))), (1, 2, 2), (1, 2, 2))


class Reduction(nn.Module):
    def __init__(self, channels, slices):
        super().__init__()
        self.reduction_z_conv = nn.Conv3d(channels, channels, (slices, 1, 1), bias=False)

    def forward(self, x):
        return self.reduction_z_conv(x)


class Squeeze(nn.Module):
    """Per-slice tokens: 1x1 conv -> P x P average pooling -> LayerNorm -> GELU, own weights per slice."""

    def __init__(self, cin, slices, patch):
        super().__init__()
        self.patch, self.slices = patch, slices
        for n in range(slices):
            self.add_module(f"conv_project{n + 1}", nn.Conv2d(cin, EMBED, 1))
            self.add_module(f"ln{n + 1}", nn.LayerNorm(EMBED, eps=1e-6))

    def forward(self, x, x_t):  # x [B, C, S, H, W], x_t [B, 1 + N, D]
        out = []
        mid = self.slices // 2
        for n in range(self.slices):
            t = getattr(self, f"conv_project{n + 1}")(x[:, :, n])
            t = F.avg_pool2d(t, self.patch, self.patch).flatten(2).transpose(1, 2)
            t = F.gelu(getattr(self, f"ln{n + 1}")(t))
            t = torch.cat([x_t[:, :1], t], 1)
            if n == mid:
                t = t + x_t
            out.append(t)
        return torch.stack(out, 1)  # [B, S, 1 + N, D]


class SliceAttention(nn.Module):
    """V from the key slice, Q and K from the other slices concatenated along channels."""

    def __init__(self, slices):
        super().__init__()
        self.qk = nn.Linear(EMBED * (slices - 1), 2 * EMBED)
        self.v = nn.Linear(EMBED, EMBED)
        self.proj = nn.Linear(EMBED, EMBED)

    def forward(self, x):  # [B, S, N, D]
        b, s, n, d = x.shape
        mid = s // 2
        others = [i for i in range(s) if i != mid]
        qk = self.qk(x[:, others].permute(0, 2, 1, 3).reshape(b, n, (s - 1) * d))
        qk = qk.reshape(b, n, 2, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        v = self.v(x[:, mid]).reshape(b, n, HEADS, d // HEADS).transpose(1, 2)
        attn = (qk[0] @ qk[1].transpose(-2, -1)) * (d // HEADS) ** -0.5
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(EMBED, 4 * EMBED)
        self.fc2 = nn.Linear(4 * EMBED, EMBED)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, slices):
        super().__init__()
        self.norm1 = nn.LayerNorm(EMBED, eps=1e-6)
        self.attn = SliceAttention(slices)
        self.norm2 = nn.LayerNorm(EMBED, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x):  # eval: drop path is the identity
        y = x[:, x.shape[1] // 2] + self.attn(self.norm1(x))
        return y + self.mlp(self.norm2(y))


class Expand(nn.Module):
    def __init__(self, cout, patch):
        super().__init__()
        self.patch = patch
        self.conv_project = nn.Conv2d(EMBED, cout, 1)
        self.bn = nn.BatchNorm2d(cout, eps=1e-6)

    def forward(self, x_t, h, w):
        b, _, d = x_t.shape
        y = x_t[:, 1:].transpose(1, 2).reshape(b, d, h, w)
        y = F.relu(self.bn(self.conv_project(y)))
        return F.interpolate(y, size=(h * self.patch, w * self.patch))


class Fusion(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-6)

    def forward(self, r, expanded):
        return r + F.relu(self.bn1(self.conv1(r + expanded)))


class A3DSATr(nn.Module):
    def __init__(self, slices=7, out_dim=512, satr=(True, True, True)):
        super().__init__()
        self.slices, self.satr = slices, list(satr)
        self.conv0 = A3DConv(1, 64, 7, stride=2, padding=3, mix=False)
        self.norm0 = nn.BatchNorm3d(64)
        channels, stage_channels = 64, []
        for i, layers in enumerate((6, 12, 24)):
            self.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels, 32, 4, slices))
            channels += layers * 32
            stage_channels.append(channels)
            self.add_module(f"reductionz{i + 1}", Reduction(channels, slices))
            if i < 2:
                self.add_module(f"transition{i + 1}", Transition(channels, channels // 2))
                channels //= 2
        for p, cin in ((4, 1024), (3, 512), (2, 256)):
            self.add_module(f"lateral{p}", nn.Conv2d(cin, out_dim, 1))
        for s, (c, patch) in enumerate(zip(stage_channels, PATCH), start=1):
            if not self.satr[s - 1]:
                continue
            self.add_module(f"squeeze_block{s}", Squeeze(c, slices, patch))
            self.add_module(f"expand_block{s}", Expand(c, patch))
            self.add_module(f"trans_block{s}", Block(slices))
            self.add_module(f"trans_patch_conv{s}", nn.Conv3d(c, EMBED, (slices, patch, patch), (1, patch, patch)))
            self.add_module(f"fusion_block{s}", Fusion(c))

    def forward(self, x):  # x [B, S, H, W]
        x = F.max_pool3d(F.relu(self.norm0(self.conv0(x.unsqueeze(1)))), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        cls, fused, tokens = None, [], {}
        for s in (1, 2, 3):
            x = getattr(self, f"denseblock{s}")(x)
            r = getattr(self, f"reductionz{s}")(x).squeeze(2)
            if self.satr[s - 1]:
                patch = PATCH[s - 1]
                h, w = x.shape[-2] // patch, x.shape[-1] // patch
                x_t = getattr(self, f"trans_patch_conv{s}")(x).flatten(2).transpose(1, 2)
                if cls is None:  # the release starts from a zero token made in forward, not a parameter
                    cls = x_t.new_zeros(x_t.shape[0], 1, EMBED)
                x_t = torch.cat([cls, x_t], 1)
                x_t = getattr(self, f"trans_block{s}")(getattr(self, f"squeeze_block{s}")(x, x_t))
                tokens[s] = x_t
                cls = x_t[:, :1]
                r = getattr(self, f"fusion_block{s}")(r, getattr(self, f"expand_block{s}")(x_t, h, w))
            fused.append(r)
            if s < 3:
                x = getattr(self, f"transition{s}")(x)
        y = self.lateral4(fused[2])
        y = F.interpolate(y, scale_factor=2, mode="nearest") + self.lateral3(fused[1])
        y = F.interpolate(y, scale_factor=2, mode="nearest") + self.lateral2(fused[0])
        return y, tokens, fused


def count(model):
    return sum(p.numel() for p in model.parameters())


def load_released(repo: str):
    """The released classes, importable without mmdet 1.x and without CUDA."""
    stub = lambda name: sys.modules.setdefault(name, types.ModuleType(name))  # noqa: E731
    for name in ("mmdet", "mmdet.models", "mmdet.models.registry", "mmdet.models.utils", "deeplesion",
                 "deeplesion.mconfigs", "deeplesion.mconfigs.densenet_a3d", "torch._six",
                 "torchvision.models.densenet"):
        stub(name)
    sys.modules["mmdet.models.registry"].BACKBONES = types.SimpleNamespace(register_module=lambda c: c)
    sys.modules["mmdet.models.utils"].build_conv_layer = None
    sys.modules["mmdet.models.utils"].build_norm_layer = lambda cfg, c, postfix=1: ("bn", nn.BatchNorm3d(c))
    cfg = sys.modules["deeplesion.mconfigs.densenet_a3d"]
    cfg.backbone_manner, cfg.RPN_head_decoupled, cfg.Unet_FPN_default = 1, 0, 0
    cfg.Fusion_manner, cfg.Trans_thick_aware, cfg.Sep_pre_Conv = 0, 0, 0
    import collections
    sys.modules["torch._six"].container_abcs = collections.abc
    import torchvision.models.densenet as tvd
    sys.modules["torchvision.models.densenet"] = tvd
    tvd.model_urls = {"densenet121": None}
    sys.path.insert(0, repo)
    src = open(os.path.join(repo, "nn", "models", "truncated_densenet3d_a3d.py")).read()
    src = src.replace("from torchvision.models.densenet import model_urls\n", "model_urls = {}\n")
    src = src.replace(".cuda()", "")
    import nn as released_nn  # noqa: F401  (the release's own package: nn/operators)
    module = types.ModuleType("released_a3d")
    module.__dict__["__name__"] = "released_a3d"
    exec(compile(src, "truncated_densenet3d_a3d.py", "exec"), module.__dict__)
    # init_weights downloads ImageNet weights; the protocol overwrites every tensor anyway.
    module.Trans_with_A3D.init_weights = lambda self, pretrained=True: None
    module.DenseNetCustomTrunc3dA3D.init_weights = lambda self, pretrained=True: None
    return module


def check_against_release(repo, x):
    released = load_released(repo)
    for satr, cls in ((True, released.Trans_with_A3D), (False, released.DenseNetCustomTrunc3dA3D)):
        ref = cls(out_dim=512, n_cts=7, fpn_finest_layer=2, memory_efficient=False)
        ours = A3DSATr(7, 512, (satr,) * 3)
        ref_sd, our_sd = ref.state_dict(), ours.state_dict()
        assert {k: tuple(v.shape) for k, v in ref_sd.items()} == {k: tuple(v.shape) for k, v in our_sd.items()}, \
            sorted(set(ref_sd) ^ set(our_sd))
        assert count(ref) == count(ours), (count(ref), count(ours))
        golden_init(ref), golden_init(ours)
        with torch.no_grad():
            a = ref(x.unsqueeze(1))[0]
            b = ours(x)[0]
        err = (a - b).abs().max().item()
        print(f"release vs transcription ({'A3D+SATr' if satr else 'A3D'}): {count(ref)} parameters, max |diff| {err:.3g}")
        assert err < 1e-4 * max(1.0, a.abs().max().item()), err


def write(name, satr, x, meta_extra=None):
    model = golden_init(A3DSATr(7, 512, satr))
    with torch.no_grad():
        y, tokens, fused = model(x)
    out = {
        "input": x,
        "out_head": y[:, :16].contiguous(),
        "out_channel_mean": y.mean((0, 2, 3)),
        "out_spatial_mean": y.mean((0, 1)),
    }
    for s, t in tokens.items():
        out[f"tokens{s}"] = t
    for s, r in enumerate(fused, start=1):
        out[f"redc{s}"] = r.mean((0, 2, 3))
    sd = model.state_dict()
    meta = {
        "protocol": "facet-golden-init-v1",
        "source": "transcription of MIRACLE-Center/A3D_SATr Trans_with_A3D / DenseNetCustomTrunc3dA3D",
        "num_parameters": str(count(model)),
        "satr_stages": json.dumps(list(satr)),
        "state_dict_shapes": json.dumps({k: list(v.shape) for k, v in sd.items()}),
        "torch": torch.__version__,
        "input_seed": "7",
    }
    if not any(satr):
        # The names and shapes of torchvision's densenet121, for the ImageNet converter's test.
        import torchvision
        tv = torchvision.models.densenet121(weights=None).state_dict()
        meta["torchvision_densenet121_shapes"] = json.dumps({k: list(v.shape) for k, v in tv.items()})
        meta["torchvision"] = torchvision.__version__
    meta.update(meta_extra or {})
    save(out, os.path.join(OUT, f"{name}.safetensors"), meta)
    print(f"{name}: {count(model)} parameters, output {list(y.shape)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--released", help="a checkout of MIRACLE-Center/A3D_SATr to check the transcription against")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    x = torch.randn([1, 7, 64, 96], generator=torch.Generator().manual_seed(7))
    if args.released:
        check_against_release(args.released, x)
    write("a3d_satr", (True, True, True), x)
    write("a3d", (False, False, False), x)
    write("a3d_satr_stage2", (False, True, False), x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
