// Metrics against hand-computed cases: per-AU F1 with unknown labels left out and its all-positive
// baseline, accuracy and macro-F1 ignoring missing labels, CCC and MAE from summed moments, the
// ABAW4 multi-task score, and merging states the way ranks do (sum, then load) on data split between
// two metric objects.
#include "core/config.h"
#include "core/safetensors.h"
#include "metrics/metric.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace facet::metrics::test_metrics {
namespace {

std::shared_ptr<Metric> make(const std::string& yaml) { return metric_registry().create(Config::parse(yaml, "m.yaml")); }

data::Batch batch(std::map<std::string, torch::Tensor> fields) {
  data::Batch b;
  for (auto& [k, v] : fields) b.fields[k] = v;
  b.indices = torch::arange(b.fields.begin()->second.size(0));
  return b;
}

TEST(Metrics, MultilabelF1PerLabelWithUnknownsLeftOut) {
  auto m = make("{name: multilabel_f1, names: [AU1, AU2]}");
  // AU1: truth 1 1 0 0, predicted 1 0 1 0 -> TP 1, FP 1, FN 1: F1 = 2/4 = 0.5.
  // AU2: truth 1 0 1 x (unknown), predicted 1 0 0 1 -> TP 1, FN 1, the unknown ignored: F1 = 2/3.
  const torch::Tensor logits = torch::tensor({{3.f, 2.f}, {-1.f, -2.f}, {1.f, -1.f}, {-4.f, 5.f}});
  const auto b = batch({{"labels", torch::tensor({{1.f, 1.f}, {1.f, 0.f}, {0.f, 1.f}, {0.f, 0.f}})},
                        {"label_mask", torch::tensor({{1.f, 1.f}, {1.f, 1.f}, {1.f, 1.f}, {1.f, 0.f}})}});
  m->update({{"logits", logits.slice(0, 0, 2)}}, batch({{"labels", b.fields.at("labels").slice(0, 0, 2)},
                                                        {"label_mask", b.fields.at("label_mask").slice(0, 0, 2)}}));
  m->update({{"logits", logits.slice(0, 2, 4)}}, batch({{"labels", b.fields.at("labels").slice(0, 2, 4)},
                                                        {"label_mask", b.fields.at("label_mask").slice(0, 2, 4)}}));
  auto r = m->compute();
  EXPECT_NEAR(r.at("f1/AU1"), 0.5, 1e-12);
  EXPECT_NEAR(r.at("f1/AU2"), 2.0 / 3, 1e-12);
  EXPECT_NEAR(r.at("f1/mean"), (0.5 + 2.0 / 3) / 2, 1e-12);
  // All positive: AU1 has 2 positives of 4 -> 2*2/(2*2+2) = 2/3; AU2 2 of 3 -> 4/5.
  EXPECT_NEAR(r.at("f1_all_positive/AU1"), 2.0 / 3, 1e-12);
  EXPECT_NEAR(r.at("f1_all_positive/AU2"), 0.8, 1e-12);
  // EMMA's per-AU thresholds on raw logits.
  auto t = make("{name: multilabel_f1, names: [AU1, AU2], logit_thresholds: [2.5, 0.0]}");
  t->update({{"logits", logits}}, b);
  EXPECT_NEAR(t->compute().at("f1/AU1"), 2.0 / 3, 1e-12);  // only sample 0 predicted: TP 1, FN 1
}

TEST(Metrics, ClassificationIgnoresMissingLabels) {
  auto m = make("{name: classification, num_classes: 3, target: expression}");
  // truth 0 1 2 -1 1, predicted 0 2 2 0 1 -> the -1 sample is ignored; accuracy 3/4.
  const torch::Tensor logits = torch::tensor({{5.f, 0.f, 0.f}, {0.f, 0.f, 5.f}, {0.f, 0.f, 5.f}, {5.f, 0.f, 0.f}, {0.f, 5.f, 0.f}});
  m->update({{"logits", logits}}, batch({{"expression", torch::tensor({0, 1, 2, -1, 1}, torch::kInt64)}}));
  const auto r = m->compute();
  EXPECT_NEAR(r.at("accuracy"), 0.75, 1e-12);
  // Per class F1: class 0 1.0, class 1 (TP 1, FN 1) 2/3, class 2 (TP 1, FP 1) 2/3.
  EXPECT_NEAR(r.at("macro_f1"), (1 + 2.0 / 3 + 2.0 / 3) / 3, 1e-12);
}

TEST(Metrics, ClassificationRefusesOutputsOfAnotherWidth) {
  auto m = make("{name: classification, num_classes: 3}");
  const auto b = batch({{"label", torch::tensor({0, 1}, torch::kInt64)}});
  try {
    m->update({{"logits", torch::zeros({2, 4})}}, b);
    ADD_FAILURE() << "four logits for three classes were accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("classification: outputs \"logits\" are [2, 4], expected [batch, num_classes = 3]"));
  }
}

TEST(Metrics, CccAndMaeFromSummedMoments) {
  auto m = make("{name: ccc, names: [valence, arousal]}");
  const torch::Tensor pred = torch::tensor({{0.f, 0.4f}, {0.5f, -0.1f}, {-0.2f, 0.2f}, {0.7f, 3.f}});
  const torch::Tensor truth = torch::tensor({{0.1f, 0.5f}, {0.4f, -0.2f}, {-0.3f, 0.0f}, {0.9f, -5.f}});
  const torch::Tensor mask = torch::tensor({{1.f, 1.f}, {1.f, 1.f}, {1.f, 1.f}, {1.f, 0.f}});
  m->update({{"va", pred}}, batch({{"va", truth}, {"va_mask", mask}}));
  auto ccc = [](std::vector<double> x, std::vector<double> y) {  // population statistics (face.md §D)
    const double n = static_cast<double>(x.size());
    double mx = 0, my = 0, vx = 0, vy = 0, cxy = 0;
    for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
    for (size_t i = 0; i < x.size(); ++i) vx += (x[i] - mx) * (x[i] - mx) / n, vy += (y[i] - my) * (y[i] - my) / n, cxy += (x[i] - mx) * (y[i] - my) / n;
    return 2 * cxy / (vx + vy + (mx - my) * (mx - my));
  };
  const auto r = m->compute();
  EXPECT_NEAR(r.at("ccc/valence"), ccc({0.0, 0.5, -0.2, 0.7}, {0.1, 0.4, -0.3, 0.9}), 1e-6);  // the inputs are float32
  EXPECT_NEAR(r.at("ccc/arousal"), ccc({0.4, -0.1, 0.2}, {0.5, -0.2, 0.0}), 1e-6);  // the inputs are float32
  auto mae = make("{name: mae, pred: pose, names: [yaw, pitch]}");
  mae->update({{"pose", torch::tensor({{10.f, 0.f}, {-5.f, 2.f}})}},
              batch({{"pose", torch::tensor({{12.f, 1.f}, {-5.f, 6.f}})}, {"pose_mask", torch::tensor({{1.f, 1.f}, {1.f, 0.f}})}}));
  const auto e = mae->compute();
  EXPECT_NEAR(e.at("mae/yaw"), 1.0, 1e-12);
  EXPECT_NEAR(e.at("mae/pitch"), 1.0, 1e-12);
}

TEST(Metrics, AbawMtlIsMeanCccPlusExpressionMacroF1PlusAuMeanF1) {
  auto m = make("{name: abaw_mtl, au: {names: [AU1, AU2]}, expression: {num_classes: 3}}");
  const auto b = batch({{"va", torch::tensor({{0.1f, 0.5f}, {0.4f, -0.2f}, {-0.3f, 0.0f}})},
                        {"expression", torch::tensor({0, 1, 2}, torch::kInt64)},
                        {"labels", torch::tensor({{1.f, 0.f}, {0.f, 1.f}, {1.f, 1.f}})}});
  const TensorDict out = {{"va", torch::tensor({{0.0f, 0.4f}, {0.5f, -0.1f}, {-0.2f, 0.2f}})},
                          {"expression_logits", torch::tensor({{5.f, 0.f, 0.f}, {0.f, 5.f, 0.f}, {5.f, 0.f, 0.f}})},
                          {"au_logits", torch::tensor({{3.f, -3.f}, {-3.f, 3.f}, {3.f, -3.f}})}};
  m->update(out, b);
  const auto r = m->compute();
  EXPECT_NEAR(r.at("mtl_score"), r.at("va/ccc/mean") + r.at("expression/macro_f1") + r.at("au/f1/mean"), 1e-12);
  EXPECT_NEAR(r.at("au/f1/AU1"), 1.0, 1e-12);
  EXPECT_NEAR(r.at("au/f1/AU2"), 2.0 / 3, 1e-12);
}

// --- merging as ranks do ---------------------------------------------------------------------
// Data split unevenly between two metric objects whose halves differ (other label rates, other
// errors), their states summed and loaded into a third, fresh object and into one of the two (as a
// rank does), must compute what one object fed everything computes. A merge that drops, reorders
// or mis-slices a state changes the result, since neither half alone gives the whole's figures.

data::Batch slice(const data::Batch& b, int64_t lo, int64_t hi) {
  data::Batch out;
  for (const auto& [k, v] : b.fields) out.fields[k] = v.slice(0, lo, hi);
  out.indices = b.indices.slice(0, lo, hi);
  return out;
}

TensorDict slice(const TensorDict& d, int64_t lo, int64_t hi) {
  TensorDict out;
  for (const auto& [k, v] : d) out[k] = v.slice(0, lo, hi);
  return out;
}

// `headline`: a value that must differ between the first half alone and the whole.
void expect_merge_equals_one_pass(const std::string& yaml, const TensorDict& outputs, const data::Batch& all,
                                  int64_t cut, const std::string& headline) {
  const int64_t n = all.size();
  auto whole = make(yaml), first = make(yaml), second = make(yaml), fresh = make(yaml);
  whole->update(outputs, all);
  first->update(slice(outputs, 0, cut), slice(all, 0, cut));
  second->update(slice(outputs, cut, n), slice(all, cut, n));
  const auto expected = whole->compute();
  ASSERT_TRUE(expected.count(headline)) << yaml;
  ASSERT_GT(std::abs(first->compute().at(headline) - expected.at(headline)), 1e-3) << yaml << ": the halves must differ";
  ASSERT_GT(std::abs(second->compute().at(headline) - expected.at(headline)), 1e-3) << yaml << ": the halves must differ";
  const torch::Tensor summed = first->state() + second->state();
  fresh->load_state(summed);
  first->load_state(summed);
  for (const auto* merged : {fresh.get(), first.get()}) {
    const auto got = merged->compute();
    EXPECT_EQ(got.size(), expected.size()) << yaml;
    for (const auto& [key, value] : expected) {
      ASSERT_TRUE(got.count(key)) << yaml << ": " << key;
      EXPECT_NEAR(got.at(key), value, 1e-9) << yaml << ": " << key;
    }
  }
}

TEST(MetricMerge, ClassificationSumsConfusionMatrices) {
  torch::manual_seed(1);
  const int64_t n = 60, cut = 36;
  // First part: classes 0 and 1, well separated; second: classes 2 and 3, noisy, some unknown (-1).
  torch::Tensor label = torch::cat({torch::randint(0, 2, {cut}), torch::randint(2, 4, {n - cut})}).to(torch::kInt64);
  const torch::Tensor noise = torch::cat({torch::randn({cut, 4}) * 0.5, torch::randn({n - cut, 4}) * 3.0});
  const torch::Tensor logits = torch::one_hot(label, 4).to(torch::kFloat) * 2 + noise;
  label.slice(0, cut, n).index_put_({torch::randint(0, 2, {n - cut}).to(torch::kBool)}, -1);
  expect_merge_equals_one_pass("{name: classification, num_classes: 4}", {{"logits", logits}},
                               batch({{"label", label}}), cut, "accuracy");
}

TEST(MetricMerge, MultilabelF1SumsCountsPerLabel) {
  torch::manual_seed(2);
  const int64_t n = 50, cut = 20;
  // First part: rare AUs, confident logits; second: frequent AUs, weak logits, a third unknown.
  const torch::Tensor labels =
      torch::cat({(torch::rand({cut, 3}) < 0.2), (torch::rand({n - cut, 3}) < 0.7)}).to(torch::kFloat);
  const torch::Tensor logits =
      (labels * 2 - 1) * torch::cat({torch::full({cut, 1}, 3.0), torch::full({n - cut, 1}, 0.3)}) + torch::randn({n, 3});
  const torch::Tensor mask =
      torch::cat({torch::ones({cut, 3}), (torch::rand({n - cut, 3}) > 0.33).to(torch::kFloat)});
  expect_merge_equals_one_pass("{name: multilabel_f1, names: [AU1, AU2, AU4]}", {{"logits", logits}},
                               batch({{"labels", labels}, {"label_mask", mask}}), cut, "f1/mean");
}

TEST(MetricMerge, CccAndMaeSumMoments) {
  torch::manual_seed(3);
  const int64_t n = 40, cut = 15;
  // The halves have different means and spreads, so per-half moments do not describe the whole.
  const torch::Tensor truth = torch::cat({torch::randn({cut, 2}) * 0.2 + 0.5, torch::randn({n - cut, 2}) * 0.4 - 0.3});
  const torch::Tensor pred = truth * torch::cat({torch::full({cut, 1}, 0.9), torch::full({n - cut, 1}, 0.4)}) +
                             torch::randn({n, 2}) * 0.2;
  const torch::Tensor mask = (torch::rand({n, 2}) > 0.2).to(torch::kFloat);
  expect_merge_equals_one_pass("{name: ccc, names: [valence, arousal]}", {{"va", pred}},
                               batch({{"va", truth}, {"va_mask", mask}}), cut, "ccc/mean");
  expect_merge_equals_one_pass("{name: mae, pred: pose, names: [yaw, pitch]}", {{"pose", pred * 30}},
                               batch({{"pose", truth * 30}, {"pose_mask", mask}}), cut, "mae/mean");
}

TEST(MetricMerge, AbawMtlSplitsTheSummedStateIntoItsParts) {
  torch::manual_seed(4);
  const int64_t n = 48, cut = 30;
  const torch::Tensor va = torch::cat({torch::rand({cut, 2}) * 0.5, torch::rand({n - cut, 2}) - 1});
  const torch::Tensor expression = torch::cat({torch::randint(0, 2, {cut}), torch::randint(0, 3, {n - cut})}).to(torch::kInt64);
  const torch::Tensor aus = torch::cat({(torch::rand({cut, 2}) < 0.3), (torch::rand({n - cut, 2}) < 0.8)}).to(torch::kFloat);
  const TensorDict out = {{"va", va + torch::randn({n, 2}) * torch::cat({torch::full({cut, 1}, 0.1), torch::full({n - cut, 1}, 0.5)})},
                          {"expression_logits", torch::one_hot(expression, 3).to(torch::kFloat) + torch::randn({n, 3})},
                          {"au_logits", (aus * 2 - 1) + torch::randn({n, 2}) * 1.5}};
  expect_merge_equals_one_pass("{name: abaw_mtl, au: {names: [AU1, AU2]}, expression: {num_classes: 3}}", out,
                               batch({{"va", va}, {"expression", expression}, {"labels", aus}}), cut, "mtl_score");
}

}  // namespace
// Pseudo-healthy synthesis (GVS's evaluation). Sample 0: x = [[1, 2], [3, 4]], y = [[1.5, 2], [3, 0]],
// the lesion at (1, 1), all brain: normal-tissue |y - x| = 0.5, 0, 0 -> MAE 0.5 / 3; MSE 0.25 / 3 and
// the brain's range 4 - 1 = 3 -> PSNR 10 log10(9 / (0.25 / 3)) = 10 log10(108). Sample 1 has no brain:
// no pixel and no PSNR. Lesion pixels found: 2 on the inputs, 1 on the outputs -> healthiness 1/2.
TEST(Metrics, PseudoHealthyIdentityAndHealthiness) {
  auto m = make("{name: pseudo_healthy}");
  const torch::Tensor x = torch::tensor({1.f, 2.f, 3.f, 4.f, 5.f, 5.f, 5.f, 5.f}).view({2, 1, 2, 2});
  const torch::Tensor y = torch::tensor({1.5f, 2.f, 3.f, 0.f, 0.f, 0.f, 0.f, 0.f}).view({2, 1, 2, 2});
  const torch::Tensor mask = torch::tensor({0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 0.f}).view({2, 1, 2, 2});
  const torch::Tensor brain = torch::tensor({1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f}).view({2, 1, 2, 2});
  // Logits [B, 2, H, W]: class 1 (lesion) wins where the second channel is larger.
  torch::Tensor on_input = torch::zeros({2, 2, 2, 2}), on_output = torch::zeros({2, 2, 2, 2});
  on_input[0][1][1][1] = 1;
  on_input[1][1][0][0] = 1;
  on_output[0][1][0][1] = 1;
  Outputs outputs{{"pseudo_healthy", y}, {"lesion_logits", on_input}, {"residual_lesion_logits", on_output}};
  m->update(outputs, batch({{"image", x}, {"mask", mask}, {"brain_mask", brain}}));
  const auto r = m->compute();
  EXPECT_NEAR(r.at("identity/mae"), 0.5 / 3, 1e-12);
  EXPECT_NEAR(r.at("identity/psnr"), 10 * std::log10(108.0), 1e-9);
  EXPECT_NEAR(r.at("healthiness"), 0.5, 1e-12);
  EXPECT_TRUE(std::isnan(r.at("identity/ssim")));  // 2 x 2 slices: the 11 px window does not fit
  // Without the segmentor's outputs there is no healthiness, and the rest stays.
  m->reset();
  m->update(Outputs{{"pseudo_healthy", y}}, batch({{"image", x}, {"mask", mask}, {"brain_mask", brain}}));
  EXPECT_TRUE(std::isnan(m->compute().at("healthiness")));
  EXPECT_NEAR(m->compute().at("identity/mae"), 0.5 / 3, 1e-12);
  EXPECT_THAT([&] { m->update(Outputs{{"pseudo_healthy", y}}, batch({{"image", x}})); },
              ::testing::ThrowsMessage<std::exception>(::testing::HasSubstr("no field \"mask\"")));
}

// SSIM of the normal tissue against scikit-image's structural_similarity (Gaussian 11 / 1.5, population
// covariances, data range 2) on lesion-masked images (tools/golden/pseudo_healthy_golden.py).
TEST(Metrics, PseudoHealthySsimMatchesScikitImage) {
  const auto golden = safetensors::load(test_support::source_path("tests/fixtures/pseudo_healthy/ssim.safetensors"));
  const torch::Tensor x = golden.at("x"), y = golden.at("y"), mask = golden.at("mask"), expected = golden.at("ssim");
  auto m = make("{name: pseudo_healthy, data_range: 2}");
  for (int64_t i = 0; i < x.size(0); ++i) {
    m->reset();
    m->update(Outputs{{"pseudo_healthy", y.narrow(0, i, 1)}}, batch({{"image", x.narrow(0, i, 1)}, {"mask", mask.narrow(0, i, 1)}}));
    EXPECT_NEAR(m->compute().at("identity/ssim"), expected[i].item<double>(), 1e-6) << i;
  }
  m->reset();
  m->update(Outputs{{"pseudo_healthy", y}}, batch({{"image", x}, {"mask", mask}}));
  EXPECT_NEAR(m->compute().at("identity/ssim"), expected.mean().item<double>(), 1e-6);  // the mean over slices
  m->reset();
  m->update(Outputs{{"pseudo_healthy", x}}, batch({{"image", x}, {"mask", mask}}));
  EXPECT_NEAR(m->compute().at("identity/ssim"), 1.0, 1e-12);
}

// Dice over a set of two batches: class 1 predicted at 3 pixels, true at 4, both at 2 -> TP 2, FP 1,
// FN 2: 4 / 7. Class 0 (background) is left out unless asked for: TP 3, FP 2, FN 1 -> 6 / 9.
TEST(Metrics, DicePerClassFromSummedPixelCounts) {
  auto m = make("{name: dice, names: [background, lesion]}");
  auto logits_of = [](std::vector<int> predicted) {
    torch::Tensor l = torch::zeros({1, 2, 1, static_cast<int64_t>(predicted.size())});
    for (size_t i = 0; i < predicted.size(); ++i) l[0][predicted[i]][0][static_cast<int64_t>(i)] = 1;
    return l;
  };
  m->update(Outputs{{"logits", logits_of({1, 1, 0, 0})}}, batch({{"mask", torch::tensor({1.f, 0.f, 1.f, 0.f}).view({1, 1, 1, 4})}}));
  m->update(Outputs{{"logits", logits_of({1, 0, 0, 0})}}, batch({{"mask", torch::tensor({1.f, 1.f, 0.f, 0.f}).view({1, 1, 1, 4})}}));
  auto r = m->compute();
  EXPECT_NEAR(r.at("dice/lesion"), 4.0 / 7, 1e-12);
  EXPECT_NEAR(r.at("dice/mean"), 4.0 / 7, 1e-12);
  EXPECT_FALSE(r.contains("dice/background"));
  // Merged as ranks merge: the state of the first batch plus the second's.
  auto a = make("{name: dice, names: [background, lesion], include_background: true}");
  auto b = make("{name: dice, names: [background, lesion], include_background: true}");
  a->update(Outputs{{"logits", logits_of({1, 1, 0, 0})}}, batch({{"mask", torch::tensor({1.f, 0.f, 1.f, 0.f}).view({1, 1, 1, 4})}}));
  b->update(Outputs{{"logits", logits_of({1, 0, 0, 0})}}, batch({{"mask", torch::tensor({1.f, 1.f, 0.f, 0.f}).view({1, 1, 1, 4})}}));
  a->load_state(a->state() + b->state());
  r = a->compute();
  EXPECT_NEAR(r.at("dice/background"), 6.0 / 9, 1e-12);
  EXPECT_NEAR(r.at("dice/mean"), (6.0 / 9 + 4.0 / 7) / 2, 1e-12);
  // Ignored pixels (-100) count nowhere: the same counts with two more pixels marked so.
  auto ignoring = make("{name: dice, names: [background, lesion]}");
  ignoring->update(Outputs{{"logits", logits_of({1, 1, 0, 0, 1, 0})}},
                   batch({{"mask", torch::tensor({1.f, 0.f, 1.f, 0.f, -100.f, -100.f}).view({1, 1, 1, 6})}}));
  ignoring->update(Outputs{{"logits", logits_of({1, 0, 0, 0})}}, batch({{"mask", torch::tensor({1.f, 1.f, 0.f, 0.f}).view({1, 1, 1, 4})}}));
  EXPECT_NEAR(ignoring->compute().at("dice/lesion"), 4.0 / 7, 1e-12);
  auto fresh = make("{name: dice, names: [background, lesion]}");  // nothing seen: the names, with no value
  EXPECT_TRUE(std::isnan(fresh->compute().at("dice/lesion")));
  EXPECT_TRUE(std::isnan(fresh->compute().at("dice/mean")));
  EXPECT_THAT([&] { m->update(Outputs{{"logits", torch::zeros({1, 3, 1, 4})}}, batch({{"mask", torch::zeros({1, 1, 1, 4})}})); },
              ::testing::ThrowsMessage<std::exception>(::testing::HasSubstr("logits has 3 classes, the metric 2")));
}

}  // namespace facet::metrics::test_metrics
