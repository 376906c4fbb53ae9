"""Golden outputs for pseudo-healthy synthesis (tests/fixtures/pseudo_healthy/, tests/generative/test_pseudo_healthy.cpp).

The networks are written here from their published descriptions, in PyTorch, with the module names of the reference
checkpoints so that the C++ models load these state dicts (and GVS's checkpoints) by name:
  generator  CycleGAN's ResnetGenerator (Zhu et al. 2017; the `resnet_9blocks` generator GVS's main.py builds with
             define_G(1, 1, ngf=64, norm='instance')): reflection pad 3, conv 7x7, instance norm (no affine, no running
             statistics, so every conv has a bias), ReLU; two stride-2 3x3 convs doubling the filters; residual blocks
             [reflection pad 1, conv 3x3, norm, ReLU, pad, conv, norm] with x + block(x); two transposed 3x3 convs
             (stride 2, padding 1, output padding 1) halving them; reflection pad 3, conv 7x7, tanh. All one
             nn.Sequential named `model`.
  segmentor  the U-Net of milesial/Pytorch-UNet as GVS's Segmenter uses it: DoubleConv = (conv 3x3 pad 1, BatchNorm,
             ReLU) x 2 as `double_conv`; inc; down_i = `maxpool_conv` (MaxPool 2, DoubleConv); up_i = up-sample x
             (bilinear x2 with align_corners, or a 2x2 stride-2 transposed conv `up` halving its channels), pad to the
             skip, cat [skip, x], DoubleConv `conv` (bilinear: mid channels in // 2); outc.conv 1x1. Bilinear halves
             the bottom (factor 2).
The losses are GVS main.py's, per sample: see models/generative/pseudo_healthy.h.

Files:
  generator_tiny.safetensors   weights (filters 4, 2 blocks, 1 -> 1 channel) and golden: x [2, 1, 12, 16], out.
  unet_tiny.safetensors        weights (width 2, bilinear, 1 -> 2 classes); x [2, 1, 20, 28] (odd sizes at the bottom:
                               the up-sampled maps are padded), out.
  unet_tiny_transposed.safetensors   the same with transposed-conv up-sampling.
  losses.safetensors           weights of generator (filters 4, 1 block) + segmentor (width 2, bilinear) under
                               generator. / segmentor., a batch (image [3, 1, 16, 16], mask, brain_mask) and the phase
                               losses (generator: adversarial, identity, fill per sample; segmentor: segmentation per
                               sample) with the segmentor in training mode (batch statistics) for both phases.
  ssim.safetensors             SSIM of the pseudo_healthy metric: x, y [3, 1, 24, 20] in [-1, 1], mask [3, 1, 24, 20]
                               and ssim [3]: scikit-image's structural_similarity(y * (1 - mask), x * (1 - mask),
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2) per image.
Metadata of generator_tiny / unet_tiny: the parameter counts of the published configurations (generator_parameters,
unet_parameters).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import save  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "pseudo_healthy")


class ResnetBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                                        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, cin=1, cout=1, f=64, blocks=9):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(cin, f, 7), nn.InstanceNorm2d(f), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(f * m, f * m * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(f * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(f * 4) for _ in range(blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(f * m, f * m // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(f * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(f, cout, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, mid):
        super().__init__()
        self.double_conv = nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(True),
                                         nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout, bilinear):
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True) if self.bilinear else self.up(x)
        dy, dx = skip.size(2) - x.size(2), skip.size(3) - x.size(3)
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], 1))


class OutConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, cin=1, classes=2, w=64, bilinear=True):
        super().__init__()
        k = 2 if bilinear else 1
        self.inc = DoubleConv(cin, w, w)
        self.down1, self.down2, self.down3 = Down(w, 2 * w), Down(2 * w, 4 * w), Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // k)
        self.up1, self.up2 = Up(16 * w, 8 * w // k, bilinear), Up(8 * w, 4 * w // k, bilinear)
        self.up3, self.up4 = Up(4 * w, 2 * w // k, bilinear), Up(2 * w, w, bilinear)
        self.outc = OutConv(w, classes)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        y = self.up1(x5, x4)
        y = self.up2(y, x3)
        y = self.up3(y, x2)
        return self.outc(self.up4(y, x1))


def count(m):
    return sum(p.numel() for p in m.parameters())


def randomise(m):
    """Weights of a scale that keeps activations O(1), and non-trivial BatchNorm statistics and affine terms."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if name.endswith("weight") and p.dim() > 1 else 0.1)
                    + (1.0 if name.endswith("weight") and p.dim() == 1 else 0.0))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn_like(mod.running_mean) * 0.1)
                mod.running_var.copy_(torch.rand_like(mod.running_var) + 0.5)
                mod.num_batches_tracked.fill_(7)


def state(m, prefix=""):
    return {prefix + k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}


def gvs_losses(G, S, x, mask, brain):
    """GVS main.py's two phases, per sample (each image with its own mask and its own normal-tissue mean)."""
    y = G(x)
    logits = S(y)
    healthy = torch.zeros(x.size(0), x.size(2), x.size(3), dtype=torch.long)
    adversarial = F.cross_entropy(logits, healthy, reduction="none").flatten(1).mean(1)
    identity = ((y - x) ** 2 * (1 - mask)).flatten(1).mean(1)
    normal = (1 - mask) * brain
    mu = ((x * normal).flatten(1).sum(1) / normal.flatten(1).sum(1).clamp_min(1)).view(-1, 1, 1, 1)
    fill = ((y - mu) ** 2 * mask).flatten(1).mean(1)
    with torch.no_grad():
        y = G(x)
    logits = S(y)
    diff = (y - x).abs().sum(1)
    weight = (1 - diff / diff.flatten(1).amax(1).view(-1, 1, 1)).clamp_min(0.1)
    segmentation = (F.cross_entropy(logits, mask[:, 0].long(), reduction="none") * weight).flatten(1).mean(1)
    return adversarial, identity, fill, segmentation


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    published = {"generator_parameters": str(count(ResnetGenerator())), "unet_parameters": str(count(UNet()))}

    g = ResnetGenerator(1, 1, 4, 2).eval()
    randomise(g)
    x = torch.randn(2, 1, 12, 16)
    with torch.no_grad():
        out = g(x)
    save({**state(g), "golden.x": x, "golden.out": out}, os.path.join(OUT, "generator_tiny.safetensors"), published)

    for bilinear, name in ((True, "unet_tiny"), (False, "unet_tiny_transposed")):
        u = UNet(1, 2, 2, bilinear).eval()
        randomise(u)
        x = torch.randn(2, 1, 20, 28)
        with torch.no_grad():
            out = u(x)
        save({**state(u), "golden.x": x, "golden.out": out}, os.path.join(OUT, name + ".safetensors"), published)

    G, S = ResnetGenerator(1, 1, 4, 1), UNet(1, 2, 2, True)
    randomise(G)
    randomise(S)
    G.train()
    S.train()
    x = torch.randn(3, 1, 16, 16)
    brain = torch.zeros(3, 1, 16, 16)
    brain[:, :, 2:14, 3:13] = 1
    x = x * brain
    mask = torch.zeros(3, 1, 16, 16)
    mask[0, :, 4:8, 5:9] = 1
    mask[1, :, 9:12, 6:11] = 1  # sample 2: no lesion
    before = state(S, "segmentor.")
    adversarial, identity, fill, segmentation = gvs_losses(G, S, x, mask, brain)
    tensors = {**state(G, "generator."), **before, "batch.image": x, "batch.mask": mask, "batch.brain_mask": brain,
               "loss.adversarial": adversarial.detach(), "loss.identity": identity.detach(), "loss.fill": fill.detach(),
               "loss.segmentation": segmentation.detach()}
    save(tensors, os.path.join(OUT, "losses.safetensors"), {})

    from skimage.metrics import structural_similarity
    x = torch.rand(3, 1, 24, 20) * 2 - 1
    y = (x + 0.3 * torch.randn(3, 1, 24, 20)).clamp(-1, 1)
    mask = torch.zeros(3, 1, 24, 20)
    mask[0, :, 5:12, 4:9] = 1
    mask[2, :, 10:20, 2:15] = 1
    keep = (1 - mask).double().numpy()
    ssim = [structural_similarity(y[i, 0].double().numpy() * keep[i, 0], x[i, 0].double().numpy() * keep[i, 0],
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0)
            for i in range(3)]
    save({"x": x, "y": y, "mask": mask, "ssim": torch.tensor(ssim, dtype=torch.float64)},
         os.path.join(OUT, "ssim.safetensors"), {})
    print(published)


if __name__ == "__main__":
    main()
