// Facet's metrics against scikit-learn on the same inputs (tools/golden/metrics_golden.py): accuracy
// and macro-F1 with unknown labels, a class never predicted and one never present; multi-label F1
// and accuracy per label with a mask and a label without positives; MAE per column; the CCC (the
// population formula, which scikit-learn lacks, in numpy). The inputs reach the metrics in uneven
// batches, as an evaluation delivers them.
#include "core/config.h"
#include "core/safetensors.h"
#include "metrics/metric.h"
#include "tests/support/paths.h"

#include <gtest/gtest.h>

#include <set>

namespace facet::metrics::test_metrics_sklearn {
namespace {

const safetensors::TensorMap& golden() {
  static const safetensors::TensorMap g =
      safetensors::load(std::filesystem::path(test_support::kSourceDir) / "tests/fixtures/metrics/sklearn_golden.safetensors");
  return g;
}

// Feeds rows [0, n) of `fields` (outputs named in `outputs`) to `metric` in batches of 50, 1, 100, ...
std::map<std::string, double> run(Metric& metric, const std::map<std::string, torch::Tensor>& fields,
                                  const std::set<std::string>& outputs) {
  const int64_t n = fields.begin()->second.size(0);
  const std::vector<int64_t> sizes = {50, 1, 100};
  for (int64_t at = 0, k = 0; at < n; ++k) {
    const int64_t size = std::min(k < 3 ? sizes[static_cast<size_t>(k)] : n, n - at);
    Outputs out;
    data::Batch b;
    for (const auto& [name, t] : fields) (outputs.count(name) ? out[name] : b.fields[name]) = t.narrow(0, at, size);
    b.indices = torch::arange(at, at + size);
    metric.update(out, b);
    at += size;
  }
  return metric.compute();
}

std::shared_ptr<Metric> make(const std::string& yaml) { return metric_registry().create(Config::parse(yaml, "m.yaml")); }
double at(const std::string& key, int64_t i = 0) { return golden().at(key)[i].item<double>(); }

TEST(MetricsSklearn, ClassificationAccuracyAndMacroF1) {
  auto m = make("{name: classification, num_classes: 7}");
  const auto r = run(*m, {{"logits", golden().at("cls_logits")}, {"label", golden().at("cls_label")}}, {"logits"});
  EXPECT_NEAR(r.at("accuracy"), at("cls_accuracy"), 1e-12);
  EXPECT_NEAR(r.at("macro_f1"), at("cls_macro_f1"), 1e-12);
}

TEST(MetricsSklearn, MultilabelF1AndAccuracyPerLabel) {
  auto m = make("{name: multilabel_f1, mask: label_mask, names: [a, b, c, d, e, f, g, h, i, j, k, l]}");
  const auto r = run(*m, {{"logits", golden().at("ml_logits")}, {"labels", golden().at("ml_labels")},
                          {"label_mask", golden().at("ml_mask")}}, {"logits"});
  const std::string names = "abcdefghijkl";
  double mean = 0, accuracy = 0;
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_NEAR(r.at(std::string("f1/") + names[static_cast<size_t>(i)]), at("ml_f1", i), 1e-12) << names[static_cast<size_t>(i)];
    mean += at("ml_f1", i) / 12;
    accuracy += at("ml_accuracy", i) / 12;
  }
  EXPECT_EQ(r.at("f1/l"), 0.0);  // no positive in the column and, at this seed, some predicted
  EXPECT_NEAR(r.at("f1/mean"), mean, 1e-12);
  EXPECT_NEAR(r.at("accuracy/mean"), accuracy, 1e-12);
}

TEST(MetricsSklearn, MaeAndCccPerColumn) {
  const std::map<std::string, torch::Tensor> fields = {
      {"va", golden().at("reg_pred")}, {"va_target", golden().at("reg_target")}, {"va_mask", golden().at("reg_mask")}};
  auto mae = make("{name: mae, pred: va, target: va_target, mask: va_mask, names: [valence, arousal]}");
  auto ccc = make("{name: ccc, pred: va, target: va_target, mask: va_mask, names: [valence, arousal]}");
  const auto a = run(*mae, fields, {"va"}), c = run(*ccc, fields, {"va"});
  EXPECT_NEAR(a.at("mae/valence"), at("reg_mae", 0), 1e-9);
  EXPECT_NEAR(a.at("mae/arousal"), at("reg_mae", 1), 1e-9);
  EXPECT_NEAR(c.at("ccc/valence"), at("reg_ccc", 0), 1e-9);
  EXPECT_NEAR(c.at("ccc/arousal"), at("reg_ccc", 1), 1e-9);
}

}  // namespace
}  // namespace facet::metrics::test_metrics_sklearn
