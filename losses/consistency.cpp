// Multi-view losses: cross-entropy of every view plus a weighted Jensen-Shannon consistency term
// (Masked CoTEX, face.md §4.5: lambda_CE = 1, lambda_JS = 100).
//
//   loss: {name: multi_view_ce_js, views: view_logits, target: label, js_weight: 100}
#include "losses/consistency.h"
#include "losses/loss.h"

namespace facet::losses {

torch::Tensor js_divergence(const torch::Tensor& p, double floor) {
  const torch::Tensor m = p.mean(0, /*keepdim=*/true).clamp_min(floor);
  const torch::Tensor kl = torch::where(p > 0, p * (p.clamp_min(floor).log() - m.log()), torch::zeros_like(p));
  return kl.mean({1, 2}).mean();
}

namespace {

class MultiViewCeJs : public Loss {
 public:
  explicit MultiViewCeJs(const Config& c)
      : views_(c.get<std::string>("views", "view_logits")),
        target_(c.get<std::string>("target", "label")),
        ce_weight_(c.get<double>("ce_weight", 1.0)),
        js_weight_(c.get<double>("js_weight", 100.0)) {}

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor logits = outputs.at(views_).to(torch::kFloat);  // [V, B, C]
    if (logits.dim() != 3) fail("multi_view_ce_js: {} must be [views, batch, classes], got {}", views_, logits.sizes());
    const torch::Tensor target = batch.fields.at(target_);
    const int64_t v = logits.size(0), b = logits.size(1);
    const torch::Tensor ce_each = torch::nn::functional::cross_entropy(
        logits.flatten(0, 1), target.repeat({v}), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    const torch::Tensor ce = ce_each.mean();  // mean over views of each view's batch mean
    const torch::Tensor js = js_divergence(torch::softmax(logits, -1));
    LossResult r;
    r.total = ce_weight_ * ce + js_weight_ * js;
    r.parts["ce"] = ce.detach();
    r.parts["js"] = js.detach();
    r.per_sample = ce_each.view({v, b}).mean(0).detach();
    return r;
  }

 private:
  std::string views_, target_;
  double ce_weight_, js_weight_;
};

FACET_REGISTER(loss_registry(), "multi_view_ce_js",
               "Cross-entropy of every view + weighted Jensen-Shannon consistency between views (Masked CoTEX)",
               [](const Config& c) { return std::make_shared<MultiViewCeJs>(c); });

}  // namespace
}  // namespace facet::losses
