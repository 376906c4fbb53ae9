// Multi-label detection metrics (AU detection, findings): per-label F1 of the positive class at a
// threshold, frame-level, unknown labels left out (face.md §A.6, §D), and their unweighted mean.
// Counts (TP, FP, FN, TN per label) sum across ranks and over folds.
//
//   metrics: [{name: multilabel_f1, logits: logits, target: labels, mask: label_mask,
//              threshold: 0.5}]          # on sigmoid(logit); or logit_thresholds: [...] (EMMA)
// compute(): f1/<label> and f1/mean (0..1), accuracy/mean, positive rates pred_rate/<label>, and the
// all-positive baseline f1_all_positive/<label> and /mean.
#include "metrics/metric.h"

namespace facet::metrics {
namespace {

class MultilabelF1 : public Metric {
 public:
  explicit MultilabelF1(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")),
        target_(c.get<std::string>("target", "labels")),
        mask_(c, "mask", "label_mask"),
        threshold_(c.get<double>("threshold", 0.5)),
        logit_thresholds_(c.get<std::vector<double>>("logit_thresholds", {})),
        names_(c.get<std::vector<std::string>>("names", {})) {
    if (!(threshold_ > 0 && threshold_ < 1)) fail("{}: {}: expected (0, 1), got {}", c.where("threshold"), c.full_key("threshold"), threshold_);
  }

  void prepare(const data::Dataset& eval) override {
    if (names_.empty()) names_ = eval.label_names();
    // Sized up front, so every rank contributes a state of the same shape even with no batch.
    if (!counts_.defined() && !names_.empty()) counts_ = torch::zeros({4, static_cast<int64_t>(names_.size())}, torch::kDouble);
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor logits = outputs.at(logits_).detach().to(torch::kCPU, torch::kFloat);
    const torch::Tensor truth = batch.fields.at(target_).to(torch::kCPU, torch::kFloat) > 0.5;
    const torch::Tensor known = mask_.of(batch, truth.to(torch::kFloat)) > 0.5;
    torch::Tensor predicted;
    if (!logit_thresholds_.empty()) {
      if (static_cast<int64_t>(logit_thresholds_.size()) != logits.size(1))
        fail("multilabel_f1: {} logit_thresholds for {} labels", logit_thresholds_.size(), logits.size(1));
      predicted = logits > torch::tensor(logit_thresholds_, torch::kFloat);
    } else {
      predicted = torch::sigmoid(logits) >= threshold_;
    }
    const auto count = [&](const torch::Tensor& t) { return (t & known).sum(0).to(torch::kDouble); };
    const torch::Tensor s = torch::stack({count(predicted & truth), count(predicted & ~truth), count(~predicted & truth),
                                          count(~predicted & ~truth)});  // [4, L]
    if (counts_.defined() && counts_.size(1) != s.size(1))
      fail("multilabel_f1: {} has {} labels, but this metric counts {} ({}); give the metric the `names` of its labels "
           "(the evaluation set's label names are for its `labels` field)",
           logits_, s.size(1), counts_.size(1), names_.empty() ? std::string("from an earlier batch") : fmt::format("{}", fmt::join(names_, ", ")));
    counts_ = counts_.defined() ? counts_ + s : s;
  }

  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    if (!counts_.defined()) return out;
    const torch::Tensor tp = counts_[0], fp = counts_[1], fn = counts_[2], tn = counts_[3];
    // F1 = 2TP / (2TP + FP + FN); 0 when the label has no positive and none is predicted.
    const torch::Tensor f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1e-12);
    const torch::Tensor accuracy = (tp + tn) / counts_.sum(0).clamp_min(1e-12);
    const torch::Tensor rate = (tp + fp) / counts_.sum(0).clamp_min(1e-12);
    // The trivial baseline every AU table should beat: predicting every label present.
    const torch::Tensor all_positive = 2 * (tp + fn) / (2 * (tp + fn) + fp + tn).clamp_min(1e-12);
    for (int64_t i = 0; i < f1.numel(); ++i) {
      const std::string name = i < static_cast<int64_t>(names_.size()) ? names_[static_cast<size_t>(i)] : fmt::format("label{}", i);
      out["f1/" + name] = f1[i].item<double>();
      out["pred_rate/" + name] = rate[i].item<double>();
      out["f1_all_positive/" + name] = all_positive[i].item<double>();
    }
    out["f1/mean"] = f1.mean().item<double>();
    out["f1_all_positive/mean"] = all_positive.mean().item<double>();
    out["accuracy/mean"] = accuracy.mean().item<double>();
    return out;
  }

  void reset() override { counts_ = torch::Tensor(); }
  torch::Tensor state() const override { return counts_.defined() ? counts_.flatten() : torch::zeros({0}, torch::kDouble); }
  void load_state(const torch::Tensor& summed) override {
    counts_ = summed.numel() ? summed.view({4, -1}).clone() : torch::Tensor();
  }

 private:
  std::string logits_, target_;
  data::MaskField mask_;
  double threshold_;
  std::vector<double> logit_thresholds_;
  std::vector<std::string> names_;
  torch::Tensor counts_;  // [4, L]: TP, FP, FN, TN
};

FACET_REGISTER(metric_registry(), "multilabel_f1",
               "Per-label F1 at a threshold with unknown labels excluded (AU F1), mean F1 and accuracy",
               [](const Config& c) { return std::make_shared<MultilabelF1>(c); });

}  // namespace
}  // namespace facet::metrics
