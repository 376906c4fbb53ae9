// BM-supervised RPN objectness, BMC anchor sampling and BM-conditioned proposals on hand-built cases
// (models/detection/bounding_maps.h, two_stage.cpp), and the option errors.
#include "core/error.h"
#include "models/detection/bounding_maps.h"
#include "models/detection/two_stage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace facet::models::detection::test_bm_rpn {
namespace {

using ::testing::HasSubstr;

std::set<int64_t> as_set(const torch::Tensor& t) {
  std::set<int64_t> s;
  for (int64_t i = 0; i < t.size(0); ++i) s.insert(t[i].item<int64_t>());
  return s;
}

std::shared_ptr<TwoStageDetector> build(const std::string& yaml) {
  return std::dynamic_pointer_cast<TwoStageDetector>(model_registry().create(Config::parse(yaml)));
}

TEST(BmRpn, SoftObjectnessLossEqualsTheHandComputedMean) {
  torch::manual_seed(0);
  auto m = build(R"({name: faster_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1, channels: 8},
                     anchors: {strides: [4], base_sizes: [4], scales: [4], ratios: [1]},
                     rpn: {objectness: bm, feat_channels: 8}, roi: {fc: 16}})");
  torch::NoGradGuard no_grad;
  m->rpn->cls_logits->weight.zero_();
  m->rpn->cls_logits->bias.fill_(0.5);
  data::Batch b;
  b.fields["image"] = torch::rand({1, 1, 32, 32});
  b.indices = torch::arange(1);
  b.ragged["boxes"] = {torch::tensor({8.f, 8.f, 16.f, 16.f}).view({1, 4})};
  Outputs out;
  const auto r = m->forward_losses(b, out);
  // One anchor per stride-4 cell (8 x 8), centres at (4 j, 4 i). The box's BM_x ridge: k = 1/8 on
  // columns 8..16 (rows [8, 16)); BM_y the same transposed. Sampled pixels with BM_xy > 0: (8, 8) 0.5,
  // (8, 12) and (12, 8) sqrt(0.5), (12, 12) 1. logit 0.5 everywhere: BCE = softplus(0.5) - 0.5 t.
  const double sum_t = 0.5 + 2 * std::sqrt(0.5) + 1.0;
  const double expected = std::log1p(std::exp(0.5)) - 0.5 * sum_t / 64;
  EXPECT_NEAR(r.parts.at("rpn_cls").item<double>(), expected, 1e-6);
  // The default (iou) objectness on the same logits: a sample of 1 / 0 labels, a different value.
  auto plain = build(R"({name: faster_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1, channels: 8},
                         anchors: {strides: [4], base_sizes: [4], scales: [4], ratios: [1]},
                         rpn: {feat_channels: 8}, roi: {fc: 16}})");
  plain->rpn->cls_logits->weight.zero_();
  plain->rpn->cls_logits->bias.fill_(0.5);
  const auto p = plain->forward_losses(b, out);
  EXPECT_GT(std::abs(p.parts.at("rpn_cls").item<double>() - expected), 1e-3);

  // Size-aware channels, anchors of 8 and 16 px (areas 64, 256): the 8 x 8 box (64 px², not below 64)
  // belongs to the 16-px channel, the 8-px channel's targets are 0: the same sum over twice the anchors.
  auto aware = build(R"({name: faster_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1, channels: 8},
                         anchors: {strides: [4], base_sizes: [4], scales: [2, 4], ratios: [1]},
                         rpn: {objectness: bm, size_aware_channels: true, feat_channels: 8}, roi: {fc: 16}})");
  aware->rpn->cls_logits->weight.zero_();
  aware->rpn->cls_logits->bias.fill_(0.5);
  EXPECT_NEAR(aware->forward_losses(b, out).parts.at("rpn_cls").item<double>(), std::log1p(std::exp(0.5)) - 0.5 * sum_t / 128, 1e-6);
}

TEST(Abm, MaskHeadTrainsAgainstTheSizeAdaptiveMap) {
  const auto make = [](const std::string& targets) {
    torch::manual_seed(0);
    return build(R"({name: mask_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1, channels: 8},
                     anchors: {strides: [4], base_sizes: [4], scales: [2, 4], ratios: [1]},
                     rpn: {feat_channels: 8}, roi: {fc: 16}, mask: {convs: 1, channels: 8, output_size: 7, targets: )" +
                 targets + "}}");
  };
  data::Batch b;
  b.fields["image"] = torch::rand({1, 1, 32, 32});
  b.indices = torch::arange(1);
  b.ragged["boxes"] = {torch::tensor({8.f, 8.f, 16.f, 16.f, 4.f, 2.f, 28.f, 30.f}).view({2, 4})};
  Outputs out;
  torch::manual_seed(1);
  auto abm = make("abm");
  const auto r = abm->forward_losses(b, out);
  torch::manual_seed(1);
  const auto e = make("boxes")->forward_losses(b, out);
  const double a = r.parts.at("mask").item<double>(), ellipse = e.parts.at("mask").item<double>();
  EXPECT_TRUE(std::isfinite(a));
  EXPECT_GT(a, 0);
  EXPECT_GT(std::abs(a - ellipse), 1e-4);  // same model, sample and logits: only the target differs
  r.total.backward();
  EXPECT_GT(abm->mask_head->parameters().front().grad().abs().sum().item<double>(), 0);
}

TEST(BmRpn, OptionErrorsNameTheKey) {
  const std::string base = R"({name: faster_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1}, )";
  try {
    build(base + "rpn: {objectness: soft}}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rpn.objectness: expected one of iou, bm"));
  }
  try {
    build(base + "rpn: {sampling: bm}}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected one of iou, bmc"));
  }
  try {
    build(R"({name: faster_rcnn, backbone: {name: resnet18}, fpn: {out_channels: 8}, rpn: {size_aware_channels: true}})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("size_aware_channels: the anchor channels must mean the same sizes on every level"));
  }
  try {
    build(R"({name: mask_rcnn, backbone: {name: test_tiny_stride4, in_channels: 1}, mask: {targets: bm}})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected masks, boxes or abm"));
  }
}

TEST(Bmc, SamplesTheNearAnchorsOfFittingAreaAndNegativesOutsideTheMap) {
  // Ground truth (10, 10, 20, 20), centre (15, 15), area 100. Anchors by distance to it:
  //   0: centred, 10 x 10 (ratio 1)          -> positive
  //   1: centred, 30 x 30 (ratio 9)          -> excluded by the area rule
  //   2: centre (16, 15), 8 x 8 (ratio 0.64) -> positive
  //   3: centre (17, 15), 3 x 3 (ratio 0.09) -> excluded
  //   4, 5: far away, 10 x 10, map 0         -> beyond the 2 k = 4 nearest; negatives
  //   6: far, map value 0.3                  -> neither
  const auto anchors = torch::tensor({10.f, 10.f, 20.f, 20.f, 0.f, 0.f, 30.f, 30.f, 12.f, 11.f, 20.f, 19.f, 15.5f, 13.5f, 18.5f,
                                      16.5f, 40.f, 40.f, 50.f, 50.f, 50.f, 0.f, 60.f, 10.f, 40.f, 0.f, 50.f, 10.f})
                           .view({-1, 4});
  const auto targets = torch::tensor({1.f, 0.5f, 0.9f, 0.8f, 0.f, 0.f, 0.3f});
  BmcOptions o;
  o.candidates = 2;
  for (int seed = 0; seed < 5; ++seed) {
    torch::manual_seed(seed);
    const auto s = sample_bmc(anchors, torch::tensor({10.f, 10.f, 20.f, 20.f}).view({1, 4}), targets, 4, 0.5, o);  // k = 2
    EXPECT_EQ(s.pos.size(0), 2);
    EXPECT_EQ(as_set(s.pos), (std::set<int64_t>{0, 2}));
    EXPECT_EQ(as_set(s.pos_gt), (std::set<int64_t>{0}));
    EXPECT_EQ(as_set(s.neg), (std::set<int64_t>{4, 5}));
  }
  // One candidate only (k = 2 drawn from it with replacement).
  o.candidates = 1;  // the 2 nearest: 0 and 1, and only 0 fits
  const auto s = sample_bmc(anchors, torch::tensor({10.f, 10.f, 20.f, 20.f}).view({1, 4}), targets, 4, 0.5, o);
  EXPECT_EQ(as_set(s.pos), (std::set<int64_t>{0}));
  EXPECT_EQ(s.pos.size(0), 2);
}

TEST(Bmc, ConnectedComponentsAreEightConnectedInRasterOrder) {
  const auto m = torch::tensor({0, 1, 0, 0, 0,  //
                                0, 0, 1, 0, 1,  //
                                0, 0, 0, 0, 1,  //
                                1, 1, 0, 0, 0})
                     .view({4, 5});
  const auto c = connected_components(m);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ((std::array<int64_t, 5>{c[0].x, c[0].y, c[0].w, c[0].h, c[0].area}), (std::array<int64_t, 5>{1, 0, 2, 2, 2}));
  EXPECT_EQ((std::array<int64_t, 5>{c[1].x, c[1].y, c[1].w, c[1].h, c[1].area}), (std::array<int64_t, 5>{4, 1, 1, 2, 2}));
  EXPECT_EQ((std::array<int64_t, 5>{c[2].x, c[2].y, c[2].w, c[2].h, c[2].area}), (std::array<int64_t, 5>{0, 3, 2, 1, 2}));
  // A U shape joins at the bottom: one component.
  const auto u = torch::tensor({1, 0, 1, 1, 0, 1, 1, 1, 1}).view({3, 3});
  EXPECT_EQ(connected_components(u).size(), 1u);
}

TEST(Bmc, ConditionedAnchorsAreNearTheObjectnessComponents) {
  // 40 x 40 level (stride 4): a 3 x 3 blob at columns 20..22, rows 10..12 (kept), a blob touching the
  // border (x = 1 <= W / 20 + 1) and one of area 4 (<= 5), both dropped.
  auto obj = torch::zeros({1, 40, 40});
  obj[0].slice(0, 10, 13).slice(1, 20, 23).fill_(1.0);
  obj[0].slice(0, 30, 33).slice(1, 1, 4).fill_(1.0);
  obj[0].slice(0, 30, 32).slice(1, 30, 32).fill_(1.0);
  AnchorGeneratorOptions ao;
  ao.strides = {4};
  ao.base_sizes = {4};
  ao.scales = {2};
  ao.ratios = {1};
  const auto anchors = AnchorGenerator(ao).grid_anchors(0, 40, 40, torch::kCPU);
  const auto [ids, boxes] = bm_conditioned_anchors(obj, anchors, 4, 4);
  ASSERT_EQ(boxes.size(0), 1);
  EXPECT_TRUE(torch::equal(boxes[0], torch::tensor({80.f, 40.f, 92.f, 52.f})));
  // Component centre (86, 46): the 4 anchor centres (on multiples of 4) nearest it are (84|88, 44|48).
  ASSERT_EQ(ids.size(0), 4);
  const auto centres = (anchors.index_select(0, ids).narrow(1, 0, 2) + anchors.index_select(0, ids).narrow(1, 2, 2)) / 2;
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(std::abs(centres[i][0].item<float>() - 86), 2, 1e-5);
    EXPECT_NEAR(std::abs(centres[i][1].item<float>() - 46), 2, 1e-5);
  }
}

}  // namespace
}  // namespace facet::models::detection::test_bm_rpn
