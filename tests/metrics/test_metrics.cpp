// Metrics against hand-computed cases: per-AU F1 with unknown labels left out and its all-positive
// baseline, accuracy and macro-F1 ignoring missing labels, CCC and MAE from summed moments, the
// ABAW4 multi-task score, and merging states the way ranks do (sum, then load).
#include "core/config.h"
#include "metrics/metric.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace facet::metrics {
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
  // Merging as ranks do: the sum of two halves' states equals one pass over everything.
  auto a = make("{name: multilabel_f1, names: [AU1, AU2]}"), c = make("{name: multilabel_f1, names: [AU1, AU2]}");
  a->update({{"logits", logits}}, b);
  c->update({{"logits", logits}}, b);
  auto merged = make("{name: multilabel_f1, names: [AU1, AU2]}");
  merged->update({{"logits", logits}}, b);
  merged->load_state(a->state() + c->state());
  EXPECT_NEAR(merged->compute().at("f1/AU2"), 2.0 / 3, 1e-12);  // F1 is invariant to doubling every count
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
  // The summed state splits back into its parts.
  auto merged = make("{name: abaw_mtl, au: {names: [AU1, AU2]}, expression: {num_classes: 3}}");
  merged->update(out, b);
  merged->load_state(m->state() * 2);
  EXPECT_NEAR(merged->compute().at("mtl_score"), r.at("mtl_score"), 1e-9);
}

}  // namespace
}  // namespace facet::metrics
