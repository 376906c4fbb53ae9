// Faster R-CNN / Mask R-CNN (models/detection/two_stage): parameter counts against torchvision's
// fasterrcnn_resnet50_fpn / maskrcnn_resnet50_fpn (tools/golden/detection_golden.py), shapes of the
// eval outputs, per-image losses, option errors, and one batch overfitted until every lesion is found
// at 1 FP per image.
#include "tests/support/tensors.h"
#include "core/safetensors.h"
#include "metrics/froc.h"
#include "models/detection/two_stage.h"
#include "tests/support/paths.h"
#include "tests/detection/tiny_backbone.h"
#include "train/visualize.h"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include <opencv2/imgcodecs.hpp>

namespace facet::models::detection::test_detectors {
namespace {

namespace fs = std::filesystem;
using test_support::parameter_count;
using ::testing::HasSubstr;

const fs::path kOps = fs::path(test_support::kSourceDir) / "tests/fixtures/detection/ops.safetensors";

std::shared_ptr<TwoStageDetector> build(const std::string& yaml) {
  auto model = model_registry().create(Config::parse(yaml));
  auto detector = std::dynamic_pointer_cast<TwoStageDetector>(model);
  if (!detector) throw std::runtime_error("not a TwoStageDetector");
  return detector;
}

TEST(Detectors, FasterRcnnResNet50FpnHasTorchvisionsParameterCount) {
  const safetensors::File g(kOps);
  auto m = build("{name: faster_rcnn, backbone: {name: resnet50}, fpn: {out_channels: 256}, num_classes: 90}");
  // torchvision's fasterrcnn_resnet50_fpn(num_classes=91 with the background) built without weights
  // (BatchNorm2d in the trunk, as here); the COCO checkpoint freezes the trunk's BatchNorm.
  EXPECT_EQ(parameter_count(*m), std::stoll(g.metadata().at("fasterrcnn_resnet50_fpn_parameters")));
  const auto by = nlohmann::json::parse(g.metadata().at("fasterrcnn_resnet50_fpn_by_prefix"));
  EXPECT_EQ(parameter_count(*m->backbone), by.at("backbone.body").get<int64_t>());
  EXPECT_EQ(parameter_count(*m->fpn), by.at("backbone.fpn").get<int64_t>());
  EXPECT_EQ(parameter_count(*m->rpn), by.at("rpn.head").get<int64_t>());
  EXPECT_EQ(parameter_count(*m->fc6) + parameter_count(*m->fc7), by.at("roi_heads.box_head").get<int64_t>());
  EXPECT_EQ(parameter_count(*m->cls_score) + parameter_count(*m->bbox_pred), by.at("roi_heads.box_predictor").get<int64_t>());
  EXPECT_EQ(m->named_parameters().contains("fpn.inner_blocks.0.0.weight"), true);
  EXPECT_EQ(m->named_parameters().contains("fpn.layer_blocks.3.0.bias"), true);
  auto mask = build("{name: mask_rcnn, backbone: {name: resnet50}, fpn: {out_channels: 256}, num_classes: 90}");
  EXPECT_EQ(parameter_count(*mask), std::stoll(g.metadata().at("maskrcnn_resnet50_fpn_parameters")));
}

const char* kTiny = R"({name: faster_rcnn, backbone: {name: test_tiny_stride4, in_channels: 3}, num_classes: 1,
                        rpn: {feat_channels: 32}, roi: {fc: 64}})";

TEST(Detectors, EvalOutputsAreRaggedBoxesScoresLabels) {
  torch::manual_seed(0);
  auto m = build(kTiny);
  // SATr's single-level defaults: 18 anchors, 2048 -> overridden 64-wide head, 50 detections per image.
  EXPECT_EQ(m->options().rpn.sample.num, 32);
  EXPECT_EQ(m->options().rpn.pre_nms_train, 12000);
  EXPECT_EQ(m->options().roi.max_per_image, 50);
  m->eval();
  data::Batch b;
  b.fields["image"] = torch::rand({2, 3, 64, 48});
  b.indices = torch::arange(2);
  torch::NoGradGuard no_grad;
  const Outputs out = m->forward(b);
  ASSERT_EQ(out.ragged.at("boxes").size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& boxes = out.ragged.at("boxes")[static_cast<size_t>(i)];
    const int64_t n = boxes.size(0);
    EXPECT_LE(n, 50);
    EXPECT_EQ(boxes.size(1), 4);
    EXPECT_EQ(out.ragged.at("scores")[static_cast<size_t>(i)].sizes(), torch::IntArrayRef({n}));
    EXPECT_EQ(out.ragged.at("labels")[static_cast<size_t>(i)].sizes(), torch::IntArrayRef({n}));
    if (n > 0) {
      EXPECT_GE(boxes.min().item<float>(), 0.0f);
      EXPECT_LE(boxes.select(1, 2).max().item<float>(), 48.0f);  // clipped to the width
      EXPECT_LE(boxes.select(1, 3).max().item<float>(), 64.0f);
    }
  }
}

// Two 64x64 three-slice images with two bright lesions each (visible on every slice).
data::Batch lesion_batch() {
  torch::manual_seed(1);
  data::Batch b;
  auto x = torch::randn({2, 3, 64, 64}) * 0.1;
  const std::vector<std::vector<std::array<float, 4>>> boxes = {{{8, 10, 26, 26}, {36, 34, 56, 52}}, {{30, 6, 50, 24}, {6, 40, 22, 58}}};
  const auto yy = torch::arange(64).view({-1, 1}).to(torch::kFloat), xx = torch::arange(64).view({1, -1}).to(torch::kFloat);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<torch::Tensor> rows;
    for (const auto& bx : boxes[i]) {
      const float cx = (bx[0] + bx[2]) / 2, cy = (bx[1] + bx[3]) / 2, rx = (bx[2] - bx[0]) / 2, ry = (bx[3] - bx[1]) / 2;
      const auto inside = ((xx + 0.5 - cx) / rx).pow(2) + ((yy + 0.5 - cy) / ry).pow(2) <= 1;
      x[static_cast<int64_t>(i)] += inside.to(torch::kFloat).unsqueeze(0);
      rows.push_back(torch::tensor({bx[0], bx[1], bx[2], bx[3]}));
    }
    b.ragged["boxes"].push_back(torch::stack(rows));
    b.ragged["box_labels"].push_back(torch::ones({2}, torch::kLong));
  }
  b.fields["image"] = x;
  b.indices = torch::arange(2);
  return b;
}

double sensitivity_at_1fp(TwoStageDetector& m, const data::Batch& b) {
  m.eval();
  torch::NoGradGuard no_grad;
  const Outputs out = m.forward(b);
  m.train();
  std::vector<metrics::DetectionRecord> records;
  for (size_t i = 0; i < 2; ++i) {
    metrics::DetectionRecord r;
    const auto g = b.ragged.at("boxes")[i].to(torch::kDouble);
    for (int64_t k = 0; k < g.size(0); ++k) r.gt.push_back({g[k][0].item<double>(), g[k][1].item<double>(), g[k][2].item<double>(), g[k][3].item<double>()});
    const auto d = out.ragged.at("boxes")[i].to(torch::kDouble);
    const auto s = out.ragged.at("scores")[i].to(torch::kDouble);
    for (int64_t k = 0; k < d.size(0); ++k) {
      r.det.push_back({d[k][0].item<double>(), d[k][1].item<double>(), d[k][2].item<double>(), d[k][3].item<double>()});
      r.scores.push_back(s[k].item<double>());
    }
    records.push_back(r);
  }
  return metrics::sensitivity_at(metrics::froc_curve(records), {1.0})[0];
}

TEST(Detectors, OverfitsOneBatchUntilEveryLesionIsFoundAtOneFalsePositivePerImage) {
  for (const char* kind : {"faster_rcnn", "mask_rcnn"}) {
    torch::manual_seed(2);
    std::string yaml = kTiny;
    yaml.replace(yaml.find("faster_rcnn"), 11, kind);
    if (std::string(kind) == "mask_rcnn") yaml.replace(yaml.rfind('}'), 1, ", mask: {targets: boxes, channels: 32}}");
    auto m = build(yaml);
    m->train();
    const auto b = lesion_batch();
    torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(2e-3));
    const auto start = std::chrono::steady_clock::now();
    std::vector<double> totals;
    double sens = 0;
    int step = 0;
    for (; step < 300; ++step) {
      Outputs outputs;
      const auto r = m->forward_losses(b, outputs);
      ASSERT_EQ(r.per_sample.sizes(), torch::IntArrayRef({2}));
      ASSERT_NEAR(r.per_sample.mean().item<double>(), r.total.item<double>(), 1e-4 * (1 + r.total.item<double>()));
      totals.push_back(r.total.item<double>());
      opt.zero_grad();
      r.total.backward();
      opt.step();
      if (step % 25 == 24 && (sens = sensitivity_at_1fp(*m, b)) == 1.0) break;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: loss %.3f -> %.3f, sensitivity at 1 FP/image %.2f after %d steps (%.1f s)\n", kind, totals.front(),
                totals.back(), sens, step + 1, seconds);
    EXPECT_EQ(sens, 1.0) << kind;
    EXPECT_LT(totals.back(), totals.front() / 2) << kind;
  }
}

TEST(Detectors, OptionErrorsNameTheKey) {
  EXPECT_THAT([] { build("{name: faster_rcnn, backbone: {name: test_tiny_stride4}, anchors: {strides: [8]}}"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("anchors.strides [8] do not match the strides of the maps the heads see [4]")));
  EXPECT_THAT([] { build("{name: faster_rcnn, backbone: {name: test_tiny_stride4}, mask: {convs: 2}}"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("faster_rcnn has no mask head (use mask_rcnn)")));
  EXPECT_THAT([] { build("{name: mask_rcnn, backbone: {name: test_tiny_stride4}, mask: {targets: polygons}}"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("expected masks, boxes or abm, got \"polygons\"")));
  EXPECT_THAT([] { build("{name: faster_rcnn, backbone: {name: test_tiny_stride4}, rpn: {pos_iou: 0.2, neg_iou: 0.3}}"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("neg_iou 0.3 above pos_iou 0.2")));
  auto m = build("{name: mask_rcnn, backbone: {name: test_tiny_stride4, in_channels: 3}, rpn: {feat_channels: 8}, roi: {fc: 8}}");
  auto b = lesion_batch();
  Outputs o;
  EXPECT_THAT([&] { m->forward_losses(b, o); }, ::testing::ThrowsMessage<Error>(HasSubstr("the batch has no ragged field \"box_masks\"")));
  b.ragged["box_labels"][0][0] = 2;
  auto f = build(kTiny);
  EXPECT_THAT([&] { f->forward_losses(b, o); }, ::testing::ThrowsMessage<Error>(HasSubstr("box_labels of 0 must be in 1..1")));
}

TEST(Detectors, DetectionPictureShowsTheWindowedKeySliceWithBoxes) {
  auto m = build(kTiny);
  EXPECT_EQ(m->default_visualizer(), "detection");
  data::Batch b = lesion_batch();
  b.fields["image"] = b.fields["image"] * 1000 - 500;  // as HU: lesions near 500, background near -500
  Outputs out;
  out.ragged["boxes"] = {torch::tensor({8.f, 10.f, 26.f, 26.f}).view({1, 4}), torch::zeros({0, 4})};
  out.ragged["scores"] = {torch::tensor({0.9f}), torch::zeros({0})};
  const std::vector<std::string> names = {"background", "lesion"};
  auto vis = train::visualizer_registry().create(Config::parse("{name: detection, window: [-1000, 1000], side: 64}"));
  const auto png = vis->draw({b, out, names}, 2);
  ASSERT_TRUE(png.has_value());
  const cv::Mat img = cv::imdecode(std::vector<uchar>(png->bytes.begin(), png->bytes.end()), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(vis->tag(), "detection");
  EXPECT_THAT([] { train::visualizer_registry().create(Config::parse("{name: detection, window: [5, 1]}")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("expected [lo, hi] with lo < hi")));
}

}  // namespace
}  // namespace facet::models::detection::test_detectors
