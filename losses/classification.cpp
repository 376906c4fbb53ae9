// Classification losses: cross-entropy with label smoothing and an ignored label (missing labels),
// per sample or per pixel (segmentation).
#include "data/class_map.h"
#include "losses/loss.h"

namespace facet::losses {
namespace {

class CrossEntropy : public Loss {
 public:
  explicit CrossEntropy(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")),
        target_(c.get<std::string>("target", "label")),
        smoothing_(c.get<double>("label_smoothing", 0.0)),
        ignore_index_(c.get<int64_t>("ignore_index", -100)) {
    if (smoothing_ < 0 || smoothing_ >= 1)
      fail("{}: {}.label_smoothing: expected a value in [0, 1), got {}", c.where("label_smoothing"), c.prefix(), smoothing_);
  }

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const auto logits = outputs.at(logits_).to(torch::kFloat);
    // Dense (segmentation): a class map or mask field; class probabilities stay soft targets.
    const auto target = data::class_map(batch.fields.at(target_), logits);
    const auto per_element = torch::nn::functional::cross_entropy(
        logits, target,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone).label_smoothing(smoothing_).ignore_index(ignore_index_));
    // The mean over the samples (pixels) whose label is known (EMMA: expression -1 = missing).
    const auto known = target.is_floating_point() ? torch::ones_like(per_element) : (target != ignore_index_).to(torch::kFloat);
    LossResult r;
    r.total = per_element.sum() / known.sum().clamp_min(1);
    r.parts["ce"] = r.total.detach();
    r.per_sample = per_element.dim() > 1 ? (per_element.flatten(1).sum(1) / known.flatten(1).sum(1).clamp_min(1)).detach()
                                         : per_element.detach();
    return r;
  }

 private:
  std::string logits_, target_;
  double smoothing_;
  int64_t ignore_index_;
};

FACET_REGISTER(loss_registry(), "cross_entropy", "Softmax cross-entropy (per sample, or per pixel for [B, C, H, W] logits) with label smoothing and ignore_index",
               [](const Config& c) { return std::make_shared<CrossEntropy>(c); });

}  // namespace
}  // namespace facet::losses
