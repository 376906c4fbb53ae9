// Detection operators (models/detection/ops) against torchvision.ops on goldens from
// tools/golden/detection_golden.py, and the assigner, sampler and anchors on hand-built cases.
#include "core/error.h"
#include "core/safetensors.h"
#include "models/detection/ops.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::models::detection::test_ops {
namespace {

namespace fs = std::filesystem;
const fs::path kOps = fs::path(test_support::kSourceDir) / "tests/fixtures/detection/ops.safetensors";

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  return a.numel() == 0 ? 0.0 : (a - b).abs().max().item<double>();
}

TEST(DetectionOps, BoxIouMatchesTorchvision) {
  const safetensors::File g(kOps);
  EXPECT_LT(max_diff(box_iou(g.tensor("iou_a"), g.tensor("iou_b")), g.tensor("iou")), 1e-6);
  EXPECT_THAT([] { box_iou(torch::zeros({2, 3}), torch::zeros({2, 4})); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("box_iou: expected [N, 4] and [M, 4] boxes")));
}

TEST(DetectionOps, NmsMatchesTorchvision) {
  const safetensors::File g(kOps);
  const auto boxes = g.tensor("nms_boxes"), scores = g.tensor("nms_scores");
  const auto keep = nms(boxes, scores, 0.5);
  ASSERT_TRUE(torch::equal(keep, g.tensor("nms_keep"))) << keep.size(0) << " kept vs " << g.tensor("nms_keep").size(0);
  EXPECT_LT(keep.size(0), 300);  // the clusters make it suppress
  EXPECT_TRUE(torch::equal(batched_nms(boxes, scores, g.tensor("nms_idxs"), 0.4), g.tensor("batched_keep")));
  // max_keep stops early with the same leading boxes.
  EXPECT_TRUE(torch::equal(nms(boxes, scores, 0.5, 7), g.tensor("nms_keep").narrow(0, 0, 7)));
  // Blocks: many boxes (more than one block of the greedy pass) give what one pass over all gives.
  auto many = torch::cat({boxes, boxes + 0.5, boxes + 1.0, boxes - 0.7}).repeat({1, 1});
  const auto many_scores = torch::rand({many.size(0)}, torch::TensorOptions().dtype(torch::kFloat));
  const auto k = nms(many, many_scores, 0.6);
  EXPECT_TRUE(torch::equal(nms_blocked(many, many_scores, 0.6), k));  // the device algorithm, here on the CPU
  EXPECT_TRUE(torch::equal(nms_blocked(boxes, scores, 0.5), g.tensor("nms_keep")));
  EXPECT_TRUE(torch::equal(nms_blocked(many, many_scores, 0.6, 9), k.narrow(0, 0, 9)));
  const auto iou = box_iou(many.index_select(0, k), many.index_select(0, k));
  EXPECT_LE((iou - torch::eye(k.size(0))).max().item<double>(), 0.6);  // no two kept boxes overlap > 0.6
  EXPECT_EQ(nms(torch::zeros({0, 4}), torch::zeros({0}), 0.5).numel(), 0);
}

class RoIAlignParity : public ::testing::TestWithParam<std::tuple<std::string, bool, int64_t>> {};

TEST_P(RoIAlignParity, ForwardAndBackwardMatchTorchvision) {
  const auto [mode, aligned, sampling] = GetParam();
  const safetensors::File g(kOps);
  auto x = g.tensor("roi_input").clone().requires_grad_(true);
  RoIAlignOptions o;
  o.output_h = 5;
  o.output_w = 4;
  o.spatial_scale = 0.5;
  o.sampling_ratio = sampling;
  o.aligned = aligned;
  const auto out = roi_align(x, g.tensor("roi_rois"), o);
  EXPECT_LT(max_diff(out.detach(), g.tensor("roi_" + mode + "_out")), 1e-5) << mode;
  (out * g.tensor("roi_grad_out")).sum().backward();
  EXPECT_LT(max_diff(x.grad(), g.tensor("roi_" + mode + "_grad")), 1e-5) << mode;
}

INSTANTIATE_TEST_SUITE_P(Modes, RoIAlignParity,
                         ::testing::Values(std::make_tuple("aligned_s2", true, 2), std::make_tuple("legacy_s2", false, 2),
                                           std::make_tuple("aligned_s0", true, 0), std::make_tuple("legacy_s0", false, 0)));

TEST(DetectionOps, BoxCoderMatchesTorchvisionWithTheReferenceStds) {
  const safetensors::File g(kOps);
  BoxCoder coder;
  coder.stds = {0.1, 0.1, 0.2, 0.2};
  EXPECT_LT(max_diff(coder.encode(g.tensor("coder_proposals"), g.tensor("coder_targets")), g.tensor("coder_deltas")), 1e-5);
  EXPECT_LT(max_diff(coder.decode(g.tensor("coder_proposals"), g.tensor("coder_codes")), g.tensor("coder_decoded")), 1e-3);
  // decode(encode(t)) = t.
  const auto t = g.tensor("coder_targets"), p = g.tensor("coder_proposals");
  EXPECT_LT(max_diff(coder.decode(p, coder.encode(p, t)), t), 1e-4);
}

TEST(DetectionOps, AnchorsMatchTorchvisionAndMmdet) {
  const safetensors::File g(kOps);
  AnchorGeneratorOptions o;
  o.strides = {4, 8};
  o.base_sizes = {32, 64};
  o.scales = {1};
  o.round = true;
  AnchorGenerator gen(o);
  EXPECT_LT(max_diff(gen.grid_anchors(0, 6, 6, torch::kCPU), g.tensor("anchors_p2")), 1e-6);
  EXPECT_LT(max_diff(gen.grid_anchors(1, 3, 3, torch::kCPU), g.tensor("anchors_p3")), 1e-6);
  // SATr's single level: base 4 x scales 4..48 x 3 ratios = 18 anchors of 16..192 px (ratio 1).
  AnchorGenerator satr(AnchorGeneratorOptions{});
  EXPECT_EQ(satr.num_anchors(), 18);
  const auto base = satr.base_anchors(0);
  const auto w = base.select(1, 2) - base.select(1, 0), h = base.select(1, 3) - base.select(1, 1);
  EXPECT_NEAR(w[6].item<float>(), 16.0, 1e-5);   // ratio 1, scale 4
  EXPECT_NEAR(w[11].item<float>(), 192.0, 1e-4);  // ratio 1, scale 48
  EXPECT_NEAR((h[0] / w[0]).item<float>(), 0.5, 1e-5);
  EXPECT_EQ(satr.grid_anchors(0, 3, 2, torch::kCPU).size(0), 3 * 2 * 18);
}

TEST(DetectionOps, MaxIoUAssignerFollowsMmdet) {
  const auto gt = torch::tensor({0.f, 0.f, 10.f, 10.f, 20.f, 20.f, 30.f, 30.f}).view({2, 4});
  const auto boxes = torch::tensor({0.f, 0.f, 10.f, 9.f,      // IoU 0.9 with gt 0: positive
                                    0.f, 0.f, 10.f, 5.f,      // 0.5: ignored (between 0.3 and 0.7)
                                    50.f, 50.f, 60.f, 60.f,   // 0: negative
                                    20.f, 20.f, 26.f, 26.f})  // 0.36 with gt 1, its best: low-quality match
                         .view({4, 4});
  MaxIoUAssignerOptions o;
  auto a = assign_max_iou(boxes, gt, o);
  EXPECT_EQ(a.gt_index[0].item<int64_t>(), 1);
  EXPECT_EQ(a.gt_index[1].item<int64_t>(), -1);
  EXPECT_EQ(a.gt_index[2].item<int64_t>(), 0);
  EXPECT_EQ(a.gt_index[3].item<int64_t>(), 2);
  o.match_low_quality = false;  // 0.36 is between neg_iou and pos_iou: ignored
  EXPECT_EQ(assign_max_iou(boxes, gt, o).gt_index[3].item<int64_t>(), -1);
  o.match_low_quality = true;
  o.min_pos_iou = 0.4;  // 0.36 no longer enough
  EXPECT_EQ(assign_max_iou(boxes, gt, o).gt_index[3].item<int64_t>(), -1);
  o.neg_iou = 0.4;  // now a negative
  EXPECT_EQ(assign_max_iou(boxes, gt, o).gt_index[3].item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(assign_max_iou(boxes, torch::zeros({0, 4}), o).gt_index, torch::zeros({4}, torch::kLong)));
}

TEST(DetectionOps, RandomSamplerKeepsTheFractionAndTheTotal) {
  torch::manual_seed(0);
  auto gt_index = torch::zeros({1000}, torch::kLong);
  gt_index.narrow(0, 0, 100).fill_(1);
  gt_index.narrow(0, 100, 50).fill_(-1);
  auto s = sample_random(gt_index, {256, 0.25});
  EXPECT_EQ(s.pos.size(0), 64);
  EXPECT_EQ(s.neg.size(0), 192);
  EXPECT_TRUE((gt_index.index_select(0, s.pos) > 0).all().item<bool>());
  EXPECT_TRUE((gt_index.index_select(0, s.neg) == 0).all().item<bool>());
  EXPECT_EQ(std::get<0>(torch::_unique(s.neg)).size(0), 192);  // without replacement
  // Few positives: negatives fill the rest.
  gt_index.narrow(0, 0, 90).fill_(0);
  s = sample_random(gt_index, {256, 0.25});
  EXPECT_EQ(s.pos.size(0), 10);
  EXPECT_EQ(s.neg.size(0), 246);
}

}  // namespace
}  // namespace facet::models::detection::test_ops
