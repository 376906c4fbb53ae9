// Segmentation: the Dice coefficient per class over the whole evaluation set, 2 TP / (2 TP + FP + FN)
// from summed pixel counts (argmax of the logits against the class map), so ranks merge by a sum.
//
//   metrics: [{name: dice, logits: logits, target: mask, names: [background, lesion]}]
// `classes` defaults to the number of names (at least 2). Reports dice/<name> for every class but the background (class 0; include_background: true adds
// it) and dice/mean over those; a class absent from both prediction and truth is NaN (not a number:
// never a best result) and left out of the mean.
#include "data/class_map.h"
#include "metrics/metric.h"

#include <limits>

namespace facet::metrics {
namespace {

class Dice : public Metric {
 public:
  explicit Dice(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")), target_(c.get<std::string>("target", "mask")),
        names_(c.get<std::vector<std::string>>("names", {})), include_background_(c.get<bool>("include_background", false)),
        classes_(c.get_in_range<int64_t>("classes", std::max<int64_t>(2, static_cast<int64_t>(names_.size())), Range::at_least(2))) {
    reset();
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    if (!outputs.contains(logits_)) fail("dice: the model gives no output \"{}\"", logits_);
    if (!batch.fields.contains(target_)) fail("dice: the batch has no field \"{}\"", target_);
    const torch::Tensor logits = outputs.at(logits_).detach();
    if (logits.dim() < 3) fail("dice: {} is {}; expected [B, classes, H, W]", logits_, logits.sizes());
    const torch::Tensor target = data::class_map(batch.fields.at(target_).to(logits.device()), logits);
    const int64_t classes = logits.size(1);
    if (classes != classes_) fail("dice: {} has {} classes, the metric {} (set metrics[].classes or names)", logits_, classes, classes_);
    if (target.sizes() != logits.argmax(1).sizes())
      fail("dice: {} is {} for logits {}", target_, batch.fields.at(target_).sizes(), logits.sizes());
    // Pixels whose class is outside 0..classes-1 (the ignore index -100) count nowhere.
    const torch::Tensor known = (target >= 0) & (target < classes);
    const torch::Tensor predicted =
        torch::one_hot(logits.argmax(1).masked_select(known), classes).to(torch::kDouble).reshape({-1, classes});
    const torch::Tensor truth = torch::one_hot(target.masked_select(known), classes).to(torch::kDouble).reshape({-1, classes});
    const torch::Tensor tp = (predicted * truth).sum(0);
    counts_ += torch::stack({tp, predicted.sum(0) - tp, truth.sum(0) - tp}).cpu();
  }

  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    double sum = 0;
    int64_t n = 0;
    for (int64_t k = include_background_ ? 0 : 1; k < counts_.size(1); ++k) {
      const double tp = counts_[0][k].item<double>(), fp = counts_[1][k].item<double>(), fn = counts_[2][k].item<double>();
      const std::string name = "dice/" + (k < static_cast<int64_t>(names_.size()) ? names_[static_cast<size_t>(k)] : std::to_string(k));
      if (tp + fp + fn == 0) {  // absent from prediction and truth: no value, and not in the mean
        out[name] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      out[name] = 2 * tp / (2 * tp + fp + fn);
      sum += out[name];
      ++n;
    }
    out["dice/mean"] = n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
    return out;
  }

  void reset() override { counts_ = torch::zeros({3, classes_}, torch::kDouble); }
  torch::Tensor state() const override { return counts_.flatten(); }
  void load_state(const torch::Tensor& summed) override { counts_ = summed.view({3, -1}).clone(); }

 private:
  std::string logits_, target_;
  std::vector<std::string> names_;
  bool include_background_;
  int64_t classes_;  // names' count, at least 2 (background and one class), unless `classes` says
  torch::Tensor counts_;  // [3, classes]: true positives, false positives, false negatives (pixels)
};

FACET_REGISTER(metric_registry(), "dice", "Segmentation: Dice per class over the set (logits, target, names, include_background)",
               [](const Config& c) { return std::make_shared<Dice>(c); });

}  // namespace
}  // namespace facet::metrics
