// Detection operators composed from ATen ops only, so they run on CPU and CUDA alike and
// differentiate through ATen: box IoU, box coding (mmdetection's DeltaXYWHBBoxCoder: means/stds and
// the clamp of dw/dh at log(1000/16)), greedy NMS (IoU matrix on the device, then the greedy pass
// over it, as torchvision's CUDA kernel does) and batched NMS by class offsets, RoIAlign (He et al.
// 2017; torchvision.ops.roi_align semantics, aligned and legacy, fixed or adaptive sampling_ratio)
// as a bilinear gather. Boxes are (x1, y1, x2, y2) in continuous pixels, widths x2 - x1 (torchvision
// and mmdetection 2.x; no +1).
#pragma once

#include <torch/torch.h>

#include <array>
#include <vector>

namespace facet::models::detection {

// [N, 4] x [M, 4] -> [N, M] intersection over union (0 where a union is empty).
torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor box_area(const torch::Tensor& boxes);

// Clip boxes to an image of `height` x `width` (coordinates in [0, width] x [0, height]).
torch::Tensor clip_boxes(const torch::Tensor& boxes, int64_t height, int64_t width);
// Indices of the boxes whose sides are both >= min_size.
torch::Tensor remove_small_boxes(const torch::Tensor& boxes, double min_size);

// Box deltas (dx, dy, dw, dh) normalised by means and stds.
struct BoxCoder {
  std::array<double, 4> means{0, 0, 0, 0};
  std::array<double, 4> stds{1, 1, 1, 1};
  double wh_clamp = 4.135166556742356;  // |log(16 / 1000)|: no box grows more than 1000/16 times

  // proposals, targets [N, 4] -> deltas [N, 4].
  torch::Tensor encode(const torch::Tensor& proposals, const torch::Tensor& targets) const;
  // rois [N, 4], deltas [N, 4 k] -> boxes [N, 4 k] (k boxes per roi, e.g. one per class).
  torch::Tensor decode(const torch::Tensor& rois, const torch::Tensor& deltas) const;
};

// Greedy NMS: indices (int64) of the kept boxes, by decreasing score. A box is dropped when its IoU
// with a kept higher-scored box is > iou_threshold (torchvision.ops.nms). max_keep > 0 stops after
// that many. CUDA: blocks of IoU matrices on the device, the greedy pass over each block on the host;
// CPU: a scalar greedy pass.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold, int64_t max_keep = -1);
// The device algorithm on any device (nms uses it on CUDA; the tests run it on the CPU too).
torch::Tensor nms_blocked(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold, int64_t max_keep = -1);
// NMS within each group of `idxs` (class or level), by offsetting each group's boxes apart.
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& idxs,
                          double iou_threshold, int64_t max_keep = -1);

struct RoIAlignOptions {
  int64_t output_h = 7, output_w = 7;
  double spatial_scale = 1.0;  // feature pixels per image pixel (1 / stride)
  int64_t sampling_ratio = 2;  // samples per bin side; <= 0: ceil(roi size / output size) per RoI
  bool aligned = true;         // false: the legacy half-pixel misalignment (Mask R-CNN, mmdet 1.x)
};

// input [N, C, H, W], rois [K, 5] (batch index, x1, y1, x2, y2) -> [K, C, output_h, output_w];
// differentiable in input.
torch::Tensor roi_align(const torch::Tensor& input, const torch::Tensor& rois, const RoIAlignOptions& options);

// Anchors as mmdetection's AnchorGenerator makes them: base anchors of `base_size` x scales x ratios
// (ratio = h / w, ratio-major order), centred at center_offset * stride of each cell, shifted over a
// feature map; optionally rounded (torchvision's AnchorGenerator rounds its base anchors).
struct AnchorGeneratorOptions {
  std::vector<int64_t> strides = {4};
  std::vector<double> base_sizes;  // one per stride; empty: the strides
  std::vector<double> scales = {4, 6, 8, 12, 24, 48};
  std::vector<double> ratios = {0.5, 1.0, 2.0};
  double center_offset = 0.0;
  bool round = false;
};

class AnchorGenerator {
 public:
  explicit AnchorGenerator(AnchorGeneratorOptions options);
  int64_t num_anchors() const { return static_cast<int64_t>(options_.scales.size() * options_.ratios.size()); }
  // [A, 4] centred at (0, 0) (plus the centre offset) for level `level`.
  torch::Tensor base_anchors(size_t level) const;
  // [H * W * A, 4], location-major (the order of a head's [A, H, W] output permuted to H, W, A).
  torch::Tensor grid_anchors(size_t level, int64_t height, int64_t width, const torch::Device& device) const;
  const AnchorGeneratorOptions& options() const { return options_; }

 private:
  AnchorGeneratorOptions options_;
};

// mmdetection's MaxIoUAssigner: for each box (anchor or proposal), -1 ignored, 0 negative, k > 0 the
// (k-1)-th ground truth. Negative: max IoU in [neg_min, neg_iou); positive: max IoU >= pos_iou; then
// (low-quality matches) each ground truth also takes every box whose IoU equals its best IoU when that
// best IoU is >= min_pos_iou.
struct MaxIoUAssignerOptions {
  double pos_iou = 0.7, neg_iou = 0.3, min_pos_iou = 0.3, neg_min = 0.0;
  bool match_low_quality = true;
  bool gt_max_assign_all = true;
};
struct Assignment {
  torch::Tensor gt_index;     // int64 [N]: -1 ignore, 0 negative, k the (k-1)-th ground truth
  torch::Tensor max_overlap;  // float [N]
};
Assignment assign_max_iou(const torch::Tensor& boxes, const torch::Tensor& gt_boxes, const MaxIoUAssignerOptions& options);

// mmdetection's RandomSampler: up to num * pos_fraction random positives, the rest random negatives.
struct SamplerOptions {
  int64_t num = 256;
  double pos_fraction = 0.5;
};
struct Sample {
  torch::Tensor pos, neg;  // int64 indices
};
Sample sample_random(const torch::Tensor& gt_index, const SamplerOptions& options);

}  // namespace facet::models::detection
