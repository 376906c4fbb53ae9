// Classification metrics from a confusion matrix: accuracy and macro-F1 (per-class F1 averaged over
// every class); negative labels are unknown and left out.
#include "metrics/metric.h"

namespace facet::metrics {
namespace {

class Classification : public Metric {
 public:
  explicit Classification(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")),
        target_(c.get<std::string>("target", "label")),
        classes_(c.get<int64_t>("num_classes")) {
    reset();
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    // Negative labels are unknown (ABAW's expression -1) and left out.
    const auto truth_all = batch.fields.at(target_).to(torch::kCPU);
    const auto known = truth_all >= 0;
    const auto& logits = outputs.at(logits_);
    // argmax over a wider or narrower output would count nonsense silently.
    if (logits.dim() != 2 || logits.size(1) != classes_)
      fail("classification: outputs \"{}\" are {}, expected [batch, num_classes = {}]", logits_, logits.sizes(), classes_);
    const auto predicted = logits.argmax(1).to(torch::kCPU).masked_select(known);
    const auto truth = truth_all.masked_select(known);
    if (truth.numel() && truth.max().item<int64_t>() >= classes_)
      fail("classification: label {} for {} classes", truth.max().item<int64_t>(), classes_);
    confusion_ += torch::bincount(truth * classes_ + predicted, {}, classes_ * classes_)
                      .view({classes_, classes_})
                      .to(torch::kDouble);
  }

  std::map<std::string, double> compute() const override {
    const double total = confusion_.sum().item<double>();
    const auto tp = confusion_.diag();
    const auto f1 = 2 * tp / (confusion_.sum(0) + confusion_.sum(1)).clamp_min(1e-12);
    return {{"accuracy", total > 0 ? tp.sum().item<double>() / total : 0.0}, {"macro_f1", f1.mean().item<double>()}};
  }

  void reset() override { confusion_ = torch::zeros({classes_, classes_}, torch::kDouble); }
  torch::Tensor state() const override { return confusion_.flatten(); }
  void load_state(const torch::Tensor& summed) override { confusion_ = summed.view({classes_, classes_}).clone(); }

 private:
  std::string logits_, target_;
  int64_t classes_;
  torch::Tensor confusion_;  // [truth, predicted]
};

FACET_REGISTER(metric_registry(), "classification", "Accuracy and macro-F1 over argmax predictions",
               [](const Config& c) { return std::make_shared<Classification>(c); });

}  // namespace
}  // namespace facet::metrics
