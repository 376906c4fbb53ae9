"""Golden outputs of torchvision's detection operators, for Facet's ATen-composed ops (models/detection/ops).

Writes tests/fixtures/detection/ops.safetensors (float32 unless noted), inputs seeded with
torch.Generator().manual_seed(...) so reruns are bit-identical:
  iou_a [7,4], iou_b [5,4], iou [7,5]                    torchvision.ops.box_iou
  nms_boxes [300,4], nms_scores [300] (distinct), nms_idxs [300] int64 (4 groups),
  nms_keep int64 (nms, IoU 0.5), batched_keep int64 (batched_nms, IoU 0.4)
  roi_input [2,3,12,15], roi_rois [8,5] (some partly outside, one degenerate), roi_grad_out,
  roi_<mode>_out [8,3,5,4] and roi_<mode>_grad [2,3,12,15] for mode in
      aligned_s2, legacy_s2, aligned_s0, legacy_s0     (aligned true/false x sampling_ratio 2/0),
  spatial_scale 0.5; the gradient is d(sum(out * roi_grad_out)) / d(roi_input)
  coder_proposals [6,4], coder_targets [6,4], coder_deltas [6,4] (encode), coder_decoded [6,4] (decode
      of coder_codes [6,4]): torchvision's BoxCoder with weights (10, 10, 5, 5) = stds (0.1, 0.1, 0.2, 0.2)
  anchors_p2 [H*W*3, 4], anchors_p3: torchvision AnchorGenerator(sizes ((32,), (64,)), ratios (0.5, 1, 2))
      on 6x6 and 3x3 maps of a 24x24 image (strides 4 and 8)
Metadata: "fasterrcnn_resnet50_fpn_parameters" (torchvision fasterrcnn_resnet50_fpn, 91 classes, built
without weights, so its trunk has BatchNorm2d like Facet's), "..._by_prefix" (JSON) and
"..._published" (the COCO checkpoint's num_params: its trunk's BatchNorm is frozen, weight and bias
are buffers there); "maskrcnn_resnet50_fpn_parameters" (the same for maskrcnn_resnet50_fpn).
"""
import json
import os

import torch
import torchvision
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from golden_io import save

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "detection")


def boxes(n, size, gen, min_wh=2.0, max_wh=None):
    max_wh = max_wh or size / 2
    xy = torch.rand(n, 2, generator=gen) * size
    wh = min_wh + torch.rand(n, 2, generator=gen) * (max_wh - min_wh)
    return torch.cat([xy, xy + wh], 1)


def main():
    torch.set_num_threads(1)
    t = {}
    g = torch.Generator().manual_seed(1)
    t["iou_a"], t["iou_b"] = boxes(7, 20, g), boxes(5, 20, g)
    t["iou_b"][4] = torch.tensor([3.0, 3.0, 3.0, 9.0])  # empty box: IoU 0
    t["iou"] = torchvision.ops.box_iou(t["iou_a"], t["iou_b"])

    g = torch.Generator().manual_seed(2)
    # Clusters of overlapping boxes, so NMS suppresses in chains.
    centres = torch.rand(30, 2, generator=g) * 100
    c = centres.repeat_interleave(10, 0) + torch.randn(300, 2, generator=g) * 4
    wh = 10 + torch.rand(300, 2, generator=g) * 20
    t["nms_boxes"] = torch.cat([c - wh / 2, c + wh / 2], 1)
    t["nms_scores"] = torch.randperm(300, generator=g).float() / 300 + 0.001
    t["nms_idxs"] = torch.randint(0, 4, (300,), generator=g)
    t["nms_keep"] = torchvision.ops.nms(t["nms_boxes"], t["nms_scores"], 0.5)
    t["batched_keep"] = torchvision.ops.batched_nms(t["nms_boxes"], t["nms_scores"], t["nms_idxs"], 0.4)

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 12, 15, generator=g)
    rois = torch.cat([torch.randint(0, 2, (8, 1), generator=g).float(), boxes(8, 30, g, 1.0, 20.0)], 1)
    rois[0, 1:] = torch.tensor([-4.0, -3.0, 8.0, 6.0])    # partly outside (top left)
    rois[1, 1:] = torch.tensor([20.0, 15.0, 34.0, 27.0])  # partly outside (bottom right)
    rois[2, 1:] = torch.tensor([5.0, 5.0, 5.5, 5.2])      # smaller than a pixel
    rois[3, 1:] = torch.tensor([1.0, 2.0, 29.0, 23.0])    # nearly the whole image
    grad_out = torch.randn(8, 3, 5, 4, generator=g)
    t["roi_input"], t["roi_rois"], t["roi_grad_out"] = x, rois, grad_out
    for name, aligned, sr in [("aligned_s2", True, 2), ("legacy_s2", False, 2), ("aligned_s0", True, 0), ("legacy_s0", False, 0)]:
        xi = x.clone().requires_grad_(True)
        out = torchvision.ops.roi_align(xi, rois, (5, 4), spatial_scale=0.5, sampling_ratio=sr, aligned=aligned)
        (out * grad_out).sum().backward()
        t[f"roi_{name}_out"], t[f"roi_{name}_grad"] = out.detach(), xi.grad

    g = torch.Generator().manual_seed(4)
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    t["coder_proposals"], t["coder_targets"] = boxes(6, 50, g), boxes(6, 50, g)
    t["coder_deltas"] = coder.encode_single(t["coder_targets"], t["coder_proposals"])
    t["coder_codes"] = torch.randn(6, 4, generator=g)
    t["coder_codes"][0, 2] = 30.0  # clamped at log(1000/16)
    t["coder_decoded"] = coder.decode_single(t["coder_codes"], t["coder_proposals"])

    gen = AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    images = ImageList(torch.zeros(1, 3, 24, 24), [(24, 24)])
    feats = [torch.zeros(1, 8, 6, 6), torch.zeros(1, 8, 3, 3)]
    a = gen(images, feats)[0]
    t["anchors_p2"], t["anchors_p3"] = a[: 6 * 6 * 3], a[6 * 6 * 3:]

    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    params = sum(p.numel() for p in model.parameters())
    mask_params = sum(p.numel() for p in maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).parameters())
    published = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]
    by_prefix = {}
    for n, p in model.named_parameters():
        key = ".".join(n.split(".")[:2])
        by_prefix[key] = by_prefix.get(key, 0) + p.numel()
    meta = {
        "source": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
        "fasterrcnn_resnet50_fpn_parameters": str(params),
        "fasterrcnn_resnet50_fpn_published": str(published),
        "maskrcnn_resnet50_fpn_parameters": str(mask_params),
        "fasterrcnn_resnet50_fpn_by_prefix": json.dumps(by_prefix, sort_keys=True),
    }
    os.makedirs(OUT, exist_ok=True)
    save(t, os.path.join(OUT, "ops.safetensors"), meta)
    print(f"fasterrcnn_resnet50_fpn: {params} parameters ({published} published, frozen BN); {by_prefix}")


if __name__ == "__main__":
    main()
