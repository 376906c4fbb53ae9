// Two-stage detectors: Faster R-CNN (Ren et al. 2015) and Mask R-CNN (He et al. 2017), registered as
// `faster_rcnn` and `mask_rcnn`. Parts: a Backbone chosen by name, an optional FPN neck (Lin et al.
// 2017; torchvision names fpn.inner_blocks / fpn.layer_blocks and its extra max-pooled level), an RPN
// head with anchor assignment, sampling and proposal NMS, a two-FC RoI box head, and for Mask R-CNN a
// 4-conv + deconv mask head trained with the Dice loss (SATr / A3D config).
//
// Defaults follow the reference configs: with an FPN those of torchvision's fasterrcnn_resnet50_fpn;
// on one stride-4 map (the A3D / SATr backbones) those of the released A3D/SATr mmdetection config
// (medical.md §3.2: 18 anchors of 16..192 px, RPN 32 samples, proposals 12000 -> 2000 / 6000 -> 300,
// 2048-wide FC head, 64 RoIs, score threshold 5e-5, NMS 0.5, 50 detections per image).
//
//   model:
//     name: faster_rcnn             # or mask_rcnn
//     backbone: {name: resnet50}    # any Backbone; its maps shallowest first
//     input: image                  # [B, S, H, W] slices as channels (or [B, H, W])
//     num_classes: 1                # foreground classes (labels 1..num_classes in box_labels)
//     fpn: {out_channels: 256, extra_pool: true}   # omit (or `fpn: false`) to use the deepest map alone
//     anchors: {strides: [4], base_sizes: [4], scales: [4, 6, 8, 12, 24, 48], ratios: [0.5, 1, 2], round: false}
//     rpn:  {feat_channels, pos_iou, neg_iou, min_pos_iou, num, pos_fraction, pre_nms_train, post_nms_train,
//            pre_nms_test, post_nms_test, nms, min_size, beta, loss_weight}
//     roi:  {output_size, sampling_ratio, aligned, fc, pos_iou, neg_iou, min_pos_iou, match_low_quality, num,
//            pos_fraction, add_gt, stds, class_agnostic, beta, score_threshold, nms, max_per_image, finest_scale}
//     mask: {convs, channels, output_size, loss_weight}    # mask_rcnn; targets from ragged `box_masks` [n, H, W]
//                                                          # or, with targets: boxes, the ellipse in each box
//
// Bounding-map switches (bounding_maps.h; Li et al. MICCAI 2020 / 2021; all off by default):
//     rpn:  {objectness: bm}          # soft BCE of every anchor's logit against BM_xy at its centre, averaged
//                                     # over all anchors of the batch (BMMVP fpn_rpn_losses); the box regression
//                                     # keeps the IoU assignment and sample, normalised by the sample size
//     rpn:  {sampling: bmc}           # BMC: positives by centre distance + area ratio, negatives where BM = 0;
//                                     # targets 1 / 0 (or the BM value with objectness: bm), box targets from
//                                     # the ground truth that chose each positive
//     rpn:  {proposals: bm_conditioned, conditioned_threshold: 0.5, conditioned_min_width: 100}
//                                     # on levels >= min_width wide: half the pre-NMS pool from the usual top
//                                     # scores, the other half anchors near objectness components; the
//                                     # component boxes are appended to the proposals
//     rpn:  {size_aware_channels: true, size_aware_others: 0}   # BM only in the anchor channels of the
//                                     # largest box's scale (needs one level, or equal base sizes)
//     mask: {targets: abm, abm: {small_half_area: 50, center_plateau: false}}
//                                     # ABM: the size-adaptive BM_xy of each positive's ground truth, RoIAligned
//                                     # to the mask grid (soft, not thresholded), replaces the GrabCut / ellipse
//                                     # target of the Dice loss. Why the mask head: the 2021 paper's "ABM-supervised
//                                     # segmentation" branch in the mmdet Mask R-CNN that A3D / SATr train (the
//                                     # only segmentation branch there); no mask annotations are needed.
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"
#include "models/detection/bounding_maps.h"
#include "models/detection/ops.h"
#include "models/model.h"

#include <torch/torch.h>

namespace facet::models::detection {

struct RpnOptions {
  int64_t feat_channels = 256;
  MaxIoUAssignerOptions assign{0.7, 0.3, 0.3};
  SamplerOptions sample{256, 0.5};
  int64_t pre_nms_train = 2000, post_nms_train = 2000, pre_nms_test = 1000, post_nms_test = 1000;
  double nms = 0.7, min_size = 1e-3, beta = 1.0 / 9.0, loss_weight = 1.0;
  std::string objectness = "iou";  // or "bm"
  std::string sampling = "iou";    // or "bmc"
  std::string proposals = "topk";  // or "bm_conditioned"
  bool size_aware_channels = false;
  double size_aware_others = 0;
  BmcOptions bmc;
  ConditionedOptions conditioned;
  int64_t conditioned_min_width = 100;  // levels narrower than this keep the plain top-k (reference: 100)
  BoundingMapOptions maps;
};

struct RoIOptions {
  int64_t output_size = 7, sampling_ratio = 2;
  bool aligned = false;
  int64_t fc = 1024;
  MaxIoUAssignerOptions assign{0.5, 0.5, 0.5, 0.0, false};
  SamplerOptions sample{512, 0.25};
  bool add_gt = true;
  std::array<double, 4> stds{0.1, 0.1, 0.2, 0.2};
  bool class_agnostic = false;
  double beta = 1.0 / 9.0, loss_weight = 1.0;
  double score_threshold = 0.05, nms = 0.5;
  int64_t max_per_image = 100;
  double finest_scale = 56;  // RoIs of sqrt(area) < 2 * finest_scale on the finest level (mmdet; = torchvision's mapper)
};

struct MaskOptions {
  int64_t convs = 4, channels = 256, output_size = 14;
  std::string targets = "masks";  // or "boxes": the ellipse inscribed in each ground-truth box; "abm"
  BoundingMapOptions abm{0, true, 50, false, 14};
  double loss_weight = 1.0;
};

struct TwoStageOptions {
  Config backbone;
  std::string input = "image";
  int64_t num_classes = 1;
  bool fpn = false;
  int64_t fpn_channels = 256;
  bool fpn_extra_pool = true;
  AnchorGeneratorOptions anchors;
  RpnOptions rpn;
  RoIOptions roi;
  bool with_mask = false;
  MaskOptions mask;

  // `with_mask`: mask_rcnn. `backbone_channels` unknown until the backbone is built: the caller
  // checks the anchor strides against its maps.
  static TwoStageOptions from(const Config& c, bool with_mask);
};

// torchvision's FeaturePyramidNetwork: 1x1 laterals, nearest top-down sums, 3x3 outputs, and
// (extra_pool) a max-pooled coarsest level (LastLevelMaxPool).
class FpnImpl : public torch::nn::Module {
 public:
  FpnImpl(const std::vector<int64_t>& in_channels, int64_t out_channels, bool extra_pool);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);

  torch::nn::ModuleList inner_blocks, layer_blocks;

 private:
  bool extra_pool_;
};
TORCH_MODULE(Fpn);

// Shared over levels: 3x3 conv + ReLU, then per-anchor objectness logits and box deltas.
class RpnHeadImpl : public torch::nn::Module {
 public:
  RpnHeadImpl(int64_t in_channels, int64_t feat_channels, int64_t num_anchors);
  // Per level: logits [B, H W A] and deltas [B, H W A, 4], location-major like the anchors.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> forward(const std::vector<torch::Tensor>& levels);

  torch::nn::Sequential conv{nullptr};
  torch::nn::Conv2d cls_logits{nullptr}, bbox_pred{nullptr};

 private:
  int64_t num_anchors_;
};
TORCH_MODULE(RpnHead);

class TwoStageDetector : public Model, public ComputesLosses {
 public:
  explicit TwoStageDetector(TwoStageOptions options);

  // Eval: ragged "boxes" [N, 4] (x1, y1, x2, y2), "scores" [N], "labels" [N] (1..num_classes) per
  // image; Mask R-CNN also "mask_probs" [N, 2 output_size, 2 output_size] in each box.
  Outputs forward(const data::Batch& batch) override;
  // rpn_cls, rpn_box, rcnn_cls, rcnn_box (and mask) with per-image values.
  losses::LossResult forward_losses(const data::Batch& batch, Outputs& outputs) override;
  std::string default_visualizer() const override { return "detection"; }

  const TwoStageOptions& options() const { return options_; }
  // Feature maps the heads see (after the FPN), shallowest first, with their strides.
  std::vector<torch::Tensor> features(const torch::Tensor& images);
  // Proposals per image (detached) from the RPN outputs.
  std::vector<torch::Tensor> proposals(const std::vector<torch::Tensor>& anchors,
                                       const std::vector<std::pair<torch::Tensor, torch::Tensor>>& rpn_out,
                                       int64_t height, int64_t width, bool training);
  std::vector<torch::Tensor> anchors(const std::vector<torch::Tensor>& levels) const;

  std::shared_ptr<Backbone> backbone;
  Fpn fpn{nullptr};
  RpnHead rpn{nullptr};
  torch::nn::Linear fc6{nullptr}, fc7{nullptr}, cls_score{nullptr}, bbox_pred{nullptr};
  torch::nn::Sequential mask_head{nullptr};

 private:
  torch::Tensor images(const data::Batch& batch) const;
  // RoIAlign of per-image boxes over the levels (mmdet level mapping) -> [sum N, C, size, size].
  torch::Tensor pool(const std::vector<torch::Tensor>& levels, const std::vector<torch::Tensor>& boxes, int64_t size,
                     int64_t sampling_ratio) const;
  std::pair<torch::Tensor, torch::Tensor> box_head(const torch::Tensor& pooled);
  // BM_xy of the image's boxes sampled for every anchor (anchor_map_targets with the options' channels).
  torch::Tensor bm_anchor_targets(const torch::Tensor& gt_boxes, const std::vector<torch::Tensor>& levels, int64_t height,
                                  int64_t width) const;

  TwoStageOptions options_;
  AnchorGenerator anchor_generator_;
  std::vector<int64_t> level_strides_;  // of the maps the heads see
  // {h, w} of each level in the last anchors() call (proposals() reads them for bm_conditioned).
  mutable std::vector<std::pair<int64_t, int64_t>> level_sizes_;
  int64_t roi_levels_ = 1;              // the RoI head pools from the first roi_levels_ maps (not the extra pool)
};

}  // namespace facet::models::detection
