// The DeepLesion FROC (metrics/froc): hand-built cases of the reference counting rules, a golden
// against a Python transcription of the reference evaluation (tools/golden/froc_golden.py), the
// registered metric's views and its records merged across ranks.
#include "core/config.h"
#include "metrics/froc.h"
#include "metrics/metric.h"
#include "tests/support/paths.h"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace facet::metrics::test_froc {
namespace {

namespace fs = std::filesystem;

DetectionRecord image(std::vector<std::array<double, 4>> gt, std::vector<std::array<double, 5>> det, double thickness = 1.0,
                      std::vector<int64_t> types = {}) {
  DetectionRecord r;
  r.gt = std::move(gt);
  r.gt_types = std::move(types);
  for (const auto& d : det) {
    r.det.push_back({d[0], d[1], d[2], d[3]});
    r.scores.push_back(d[4]);
  }
  r.thickness = thickness;
  return r;
}

TEST(Froc, CountsHitsMissesAndRepeatedHitsLikeTheReference) {
  // Two images, three lesions. By score: hit A (0.9), FP (0.8), a second hit on A (0.7: neither),
  // hit B (0.6), FP (0.5), hit C (0.4).
  std::vector<DetectionRecord> images = {
      image({{0, 0, 9, 9}, {50, 50, 69, 69}}, {{0, 0, 9, 9, 0.9}, {100, 100, 120, 120, 0.8}, {0, 0, 9, 8, 0.7}, {50, 50, 69, 69, 0.6}}),
      image({{10, 10, 29, 29}}, {{200, 200, 220, 220, 0.5}, {10, 10, 29, 29, 0.4}})};
  const auto curve = froc_curve(images);
  EXPECT_THAT(curve.fp_per_image, ::testing::ElementsAre(0.0, 0.5, 0.5, 0.5, 1.0, 1.0));
  EXPECT_THAT(curve.sensitivity, ::testing::ElementsAre(1.0 / 3, 1.0 / 3, 1.0 / 3, 2.0 / 3, 2.0 / 3, 1.0));
  // At 0.5 FP/image: the last point at 0.5 (np.interp, which interp1d uses, takes the last of equal
  // x); at 0.75 between (0.5, 2/3) and (1.0, 2/3); at 1.0 and past the end: the last value.
  const auto s = sensitivity_at(curve, {0.5, 0.75, 1.0, 4.0, 0.0});
  EXPECT_NEAR(s[0], 2.0 / 3, 1e-12);
  EXPECT_NEAR(s[1], 2.0 / 3, 1e-12);
  EXPECT_NEAR(s[2], 1.0, 1e-12);
  EXPECT_NEAR(s[3], 1.0, 1e-12);
  EXPECT_NEAR(s[4], 1.0 / 3, 1e-12);
  // IoU with +1 widths: [0,0,9,9] vs [0,0,9,4] is 50/100 = 0.5 (a hit); without the +1, 36/81 (a miss).
  const std::vector<DetectionRecord> edge = {image({{0, 0, 9, 9}}, {{0, 0, 9, 4, 0.9}})};
  EXPECT_EQ(froc_curve(edge, 0.5, true).sensitivity.back(), 1.0);
  EXPECT_EQ(froc_curve(edge, 0.5, false).sensitivity.back(), 0.0);
  // One detection overlapping two lesions hits both.
  const std::vector<DetectionRecord> two = {image({{0, 0, 9, 9}, {0, 0, 9, 10}}, {{0, 0, 9, 9, 0.9}})};
  EXPECT_EQ(froc_curve(two).sensitivity.back(), 1.0);
}

TEST(Froc, MatchesTheReferenceEvaluationTranscription) {
  std::ifstream in(fs::path(test_support::kSourceDir) / "tests/fixtures/detection/froc_golden.json");
  const auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 3u);
  for (const auto& c : cases) {
    std::vector<DetectionRecord> all, thin, thick;
    for (const auto& im : c["images"]) {
      DetectionRecord r;
      for (const auto& g : im["gt"]) r.gt.push_back({g[0].get<double>(), g[1].get<double>(), g[2].get<double>(), g[3].get<double>()});
      for (const auto& d : im["det"]) {
        r.det.push_back({d[0].get<double>(), d[1].get<double>(), d[2].get<double>(), d[3].get<double>()});
        r.scores.push_back(d[4].get<double>());
      }
      r.thickness = im["thickness"].get<double>();
      all.push_back(r);
      if (r.thickness <= 2.0) thin.push_back(r);
      if (r.thickness == 5.0) thick.push_back(r);
    }
    const auto fps = c["fps"].get<std::vector<double>>();
    for (const auto& [key, set] : {std::pair{"sens", &all}, std::pair{"sens_thin", &thin}, std::pair{"sens_thick", &thick}}) {
      const auto got = sensitivity_at(froc_curve(*set), fps);
      const auto want = c[key].get<std::vector<double>>();
      for (size_t k = 0; k < fps.size(); ++k)
        EXPECT_NEAR(got[k], want[k], 1e-12) << c["name"].get<std::string>() << " " << key << " @" << fps[k];
    }
  }
}

TEST(Froc, AveragePrecisionOnHandBuiltCases) {
  // Perfect ranking: AP 1. One FP ranked above the only hit: precision 1/2 at every recall.
  EXPECT_NEAR(average_precision({image({{0, 0, 10, 10}}, {{0, 0, 10, 10, 0.9}, {50, 50, 60, 60, 0.1}})}), 1.0, 1e-12);
  EXPECT_NEAR(average_precision({image({{0, 0, 10, 10}}, {{50, 50, 60, 60, 0.9}, {0, 0, 10, 10, 0.1}})}), 0.5, 1e-12);
  // Two lesions, one found: recall never passes 0.5 -> 51 of 101 points at precision 1.
  EXPECT_NEAR(average_precision({image({{0, 0, 10, 10}, {30, 30, 40, 40}}, {{0, 0, 10, 10, 0.9}})}), 51.0 / 101, 1e-12);
}

data::Batch batch_of(const std::vector<DetectionRecord>& images, int64_t first_index, Outputs& out) {
  data::Batch b;
  const auto n = static_cast<int64_t>(images.size());
  b.indices = torch::arange(first_index, first_index + n);
  std::vector<torch::Tensor> spacing;
  for (const auto& r : images) {
    auto gt = torch::empty({static_cast<int64_t>(r.gt.size()), 4}, torch::kDouble);
    for (size_t g = 0; g < r.gt.size(); ++g)
      for (int k = 0; k < 4; ++k) gt[static_cast<int64_t>(g)][k] = r.gt[g][static_cast<size_t>(k)];
    b.ragged["boxes"].push_back(gt.to(torch::kFloat));
    b.ragged["box_types"].push_back(torch::tensor(r.gt_types, torch::kLong));
    auto det = torch::empty({static_cast<int64_t>(r.det.size()), 4}, torch::kDouble);
    for (size_t d = 0; d < r.det.size(); ++d)
      for (int k = 0; k < 4; ++k) det[static_cast<int64_t>(d)][k] = r.det[d][static_cast<size_t>(k)];
    out.ragged["boxes"].push_back(det);
    out.ragged["scores"].push_back(torch::tensor(r.scores, torch::kDouble));
    spacing.push_back(torch::tensor({0.8, 0.8, r.thickness}));
  }
  b.fields["spacing"] = torch::stack(spacing);
  return b;
}

TEST(Froc, RegisteredMetricGivesEveryViewAndMergesRanks) {
  const std::vector<DetectionRecord> rank0 = {
      image({{0, 0, 9, 9}}, {{0, 0, 9, 9, 0.9}, {100, 100, 120, 120, 0.3}}, 1.0, {4}),
      image({{10, 10, 29, 29}}, {{200, 200, 220, 220, 0.8}}, 5.0, {5})};
  const std::vector<DetectionRecord> rank1 = {image({{30, 30, 49, 49}, {60, 60, 79, 79}}, {{30, 30, 49, 49, 0.7}}, 5.0, {4, 5})};
  auto metric = metric_registry().create(Config::parse("{name: froc}"));
  auto other = metric_registry().create(Config::parse("{name: froc}"));
  Outputs o0, o1;
  metric->update(o0, batch_of(rank0, 0, o0));
  other->update(o1, batch_of(rank1, 2, o1));
  const std::vector<std::string> all = {metric->records(), other->records()};
  metric->merge_records(all);
  other->merge_records(all);
  const auto a = metric->compute(), b = other->compute();
  EXPECT_EQ(a, b);  // every rank computes the same from the merged records
  std::vector<DetectionRecord> together = rank0;
  together.insert(together.end(), rank1.begin(), rank1.end());
  const auto want = sensitivity_at(froc_curve(together), {0.5, 1, 2, 4, 8, 16});
  EXPECT_DOUBLE_EQ(a.at("froc/sens@0.5"), want[0]);
  EXPECT_DOUBLE_EQ(a.at("froc/sens@4"), want[3]);
  double mean = 0;
  for (double v : want) mean += v / 6;
  EXPECT_NEAR(a.at("froc/mean"), mean, 1e-12);
  // 3 images: 1 mm (1 lesion, hit) and two of 5 mm (3 lesions, 1 hit, 1 FP over 2 images).
  EXPECT_DOUBLE_EQ(a.at("froc/thick<=2mm/sens@16"), 1.0);
  EXPECT_DOUBLE_EQ(a.at("froc/thick=5mm/sens@16"), 1.0 / 3);
  // Types 4 (liver: 2 lesions, both hit) and 5 (lung: 2 lesions, none hit).
  EXPECT_DOUBLE_EQ(a.at("froc/liver/sens@4"), 1.0);
  EXPECT_DOUBLE_EQ(a.at("froc/lung/sens@4"), 0.0);
  EXPECT_TRUE(a.contains("froc/ap50"));
  EXPECT_THAT([&] { metric->merge_records({"3 1.0 2 0 1 2 3 4 -1\n"}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("froc: truncated record line for image 3")));
}

}  // namespace
}  // namespace facet::metrics::test_froc
