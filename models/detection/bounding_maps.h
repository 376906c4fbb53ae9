// Bounding maps for universal lesion detection (Li, Han, Zhou, "Bounding Maps for Universal Lesion
// Detection", MICCAI 2020) and their conditional-training extensions BMC / ABM (Li, Chen, Han, Zhou,
// "Conditional Training with Bounding Map for Universal Lesion Detection", MICCAI 2021). Facts:
// shared/research/medical.md §4.
//
// A box becomes three soft maps at the network's input size, as BMMVP tools/mask2bbox.py
// (one_img_gt_bbox_as_maps) draws them, rounding included (np.round = round half to even, as
// torch::round): with dx = (x2 - x1) / 2, cx = round(x1 + dx), n = round(dx), k = 0.5 / dx (0.5 when
// dx <= 1),
//   BM_x[r, c] = 1 - k |c - cx| for |c - cx| <= n, on the rows round(y1) .. round(y2) - 1, else 0;
//   BM_y likewise with rows and columns exchanged; BM_xy = sqrt(BM_x BM_y) per box.
// The maps of several boxes are summed and then clipped to 1. Deviation at the border: the reference
// indexes a Python array, so a column left of 0 wraps to the right edge (and one right of the edge
// raises); here such pixels are dropped.
//
// ABM (size-adaptive, the `size_adapt` / `center_1` options of the SATr copy of that file): when
// dx dy < small_half_area (50: a box of < 200 px²) the slope is 0, so the ridge is flat (1 over the
// box); with center_plateau a larger box also gets a plateau of 1 on the plateau x plateau (14 x 14)
// pixels around its centre (rows and columns cy - 8 .. cy + 5, as coded) and a small box is exactly 1
// on its rounded extent.
//
// RPN use (BMMVP lib/modeling/FPN.py): BM_xy resized to each level with nearest interpolation, one
// copy per anchor channel. Nearest resizing of an H x W map to the level's h x w picks pixel
// (floor(i H / h), floor(j W / w)); for anchors centred on multiples of the stride (centre offset 0,
// both reference anchor generators) and H = h stride this is the map value at the anchor's centre.
// Anchor k of location (i, j) in the location-major order of the heads gets channel k's value there.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace facet::models::detection {

struct BoundingMapOptions {
  double offset = 0;             // subtracted from the coordinates first (the SATr copy: 1)
  bool size_adaptive = false;    // ABM: flat map for small boxes
  double small_half_area = 50;   // dx dy below this is "small" (half-widths: 200 px² of box)
  bool center_plateau = false;   // ABM's center_1 option
  int64_t plateau = 14;
};

struct BoundingMaps {
  torch::Tensor x, y, xy;  // float [H, W] (or [N, H, W] from box_bounding_maps)
};

// Summed over the boxes [N, 4] (x1, y1, x2, y2 in input pixels) and clipped to 1; zeros when N = 0.
BoundingMaps bounding_maps(const torch::Tensor& boxes, int64_t height, int64_t width, const BoundingMapOptions& options = {});
// One map per box, unclipped: [N, H, W] each.
BoundingMaps box_bounding_maps(const torch::Tensor& boxes, int64_t height, int64_t width, const BoundingMapOptions& options = {});

// RPN objectness targets: the map [H, W] sampled for every anchor of each level (sizes {h, w}),
// location-major [h w A] per level, concatenated over levels. With size-aware channels (SATr copy,
// `size_aware`), channels are grouped by anchor scale (channel = ratio * scales + scale, the mmdet
// order) and only the group whose scale fits the image's largest box gets the map, the others
// `others` x the map (0 or 0.5 in the reference): the group is the first scale s whose anchor area
// (base_size scale_s)² exceeds that box's area, else the largest (A3D anchors: 256, 576, 1024, 2304,
// 9216 px², the reference's thresholds).
struct SizeAwareChannels {
  std::vector<double> anchor_areas;  // per scale (one level's base size), empty: off
  int64_t num_ratios = 1;
  double others = 0;
};
torch::Tensor anchor_map_targets(const torch::Tensor& map, const std::vector<std::pair<int64_t, int64_t>>& level_sizes,
                                 int64_t num_anchors, const torch::Tensor& gt_boxes, const SizeAwareChannels& size_aware = {});

// BMC positive anchors (SATr tools/mask2bbox.py match_an_to_gtbox): for each ground truth, the
// `candidates` x k anchors nearest its centre (squared centre distance), those with anchor / box
// area in (min_ratio, max_ratio), k of them drawn at random (with replacement when fewer; when none
// passes, k drawn from the 5 k nearest). Negatives: anchors whose target map value is 0 (outside
// every bounding map), drawn at random to fill `num`. k = max(1, num pos_fraction / #boxes).
struct BmcOptions {
  int64_t candidates = 20;
  double min_ratio = 0.25, max_ratio = 4;
};
struct BmcSample {
  torch::Tensor pos, neg, pos_gt;  // int64: anchor indices, and the ground truth of each positive
};
BmcSample sample_bmc(const torch::Tensor& anchors, const torch::Tensor& gt_boxes, const torch::Tensor& anchor_targets,
                     int64_t num, double pos_fraction, const BmcOptions& options = {});

// 8-connected components of a binary [H, W] map, labelled in raster order (cv2.connectedComponentsWithStats
// order and stats: x, y, width, height, area of each component).
struct Component {
  int64_t x, y, w, h, area;
};
std::vector<Component> connected_components(const torch::Tensor& binary);

// Objectness-conditioned proposal selection (BMMVP / SATr objectness_to_mathced_ids) on one level of
// one image: for each anchor channel, the objectness [A, h, w] min-max normalised, thresholded,
// components kept when area > 5 and the top-left corner is inside (W/20 + 1, W - W/20 + 1) in both
// axes; at most 32 components (a random 32). Each component, scaled by the stride, selects the
// `per_component` anchors of the level nearest its centre among those within max(w, 40) x max(h, 40)
// of it. Returns the anchor indices (into the level's location-major anchors) and the component boxes
// (x1, y1, x2, y2, input pixels).
struct ConditionedOptions {
  double threshold = 0.5;  // SATr copy (BMMVP: 0.3)
  int64_t min_area = 5, max_components = 32;
  double min_window = 40;
};
std::pair<torch::Tensor, torch::Tensor> bm_conditioned_anchors(const torch::Tensor& objectness, const torch::Tensor& level_anchors,
                                                               int64_t stride, int64_t per_component,
                                                               const ConditionedOptions& options = {});

}  // namespace facet::models::detection
