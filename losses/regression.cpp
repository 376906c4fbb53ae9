// Regression losses: the concordance correlation coefficient loss for valence-arousal (EMMA,
// face.md §4.2) and a masked L1 for age and head pose.
//
//   loss: {name: ccc, pred: va, target: va, mask: va_mask}
//   loss: {name: l1, pred: age, target: age, mask: age_mask}
#include "losses/loss.h"

namespace facet::losses {
namespace {

torch::Tensor field(const data::Batch& batch, const std::string& name) {
  if (!batch.fields.contains(name)) fail("loss: the batch has no field \"{}\"", name);
  return batch.fields.at(name).to(torch::kFloat);
}

// [B] or [B, D] -> [B, D].
torch::Tensor columns(const torch::Tensor& t) { return t.dim() == 1 ? t.unsqueeze(1) : t; }

// EMMA's batch CCC per column over the masked samples: rho = cov / (sqrt(sxx) sqrt(syy) + eps),
// CCC = 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2 + eps), s the unbiased standard deviation,
// eps = 1e-4. A column with fewer than two known samples contributes a CCC of 1 (no loss).
// The sums of squares are clamped away from 0 before their square roots: sqrt's gradient at 0 is
// infinite, and times the zero gradient of a constant or masked-out column it is NaN, which would
// reach every weight (or, under AMP, silently skip the update as an overflow).
torch::Tensor batch_ccc(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m, double eps) {
  const torch::Tensor n = m.sum(0);
  const torch::Tensor mx = (x * m).sum(0) / n.clamp_min(1), my = (y * m).sum(0) / n.clamp_min(1);
  const torch::Tensor dx = (x - mx) * m, dy = (y - my) * m;
  const torch::Tensor sxx = (dx * dx).sum(0).clamp_min(1e-20), syy = (dy * dy).sum(0).clamp_min(1e-20), sxy = (dx * dy).sum(0);
  const torch::Tensor rho = sxy / (sxx.sqrt() * syy.sqrt() + eps);
  const torch::Tensor sx = (sxx / (n - 1).clamp_min(1)).sqrt(), sy = (syy / (n - 1).clamp_min(1)).sqrt();
  const torch::Tensor ccc = 2 * rho * sx * sy / (sx * sx + sy * sy + (mx - my).pow(2) + eps);
  return torch::where(n >= 2, ccc, torch::ones_like(ccc));
}

class CccLoss : public Loss {
 public:
  explicit CccLoss(const Config& c)
      : pred_(c.get<std::string>("pred", "va")),
        target_(c.get<std::string>("target", "va")),
        mask_(c, "mask", "va_mask"),
        eps_(c.get<double>("eps", 1e-4)) {}

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor x = columns(outputs.at(pred_).to(torch::kFloat)), y = columns(field(batch, target_));
    const torch::Tensor m = mask_.of(batch, y);
    const torch::Tensor ccc = batch_ccc(x, y, m, eps_);
    LossResult r;
    r.total = (1 - ccc).sum();  // EMMA: (1 - CCC_v) + (1 - CCC_a)
    r.parts["ccc"] = r.total.detach();
    return r;
  }

 private:
  std::string pred_, target_;
  data::MaskField mask_;
  double eps_;
};

class L1Loss : public Loss {
 public:
  explicit L1Loss(const Config& c)
      : pred_(c.get<std::string>("pred")),
        target_(c.get<std::string>("target", pred_)),
        mask_(c, "mask", target_ + "_mask") {}

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor x = columns(outputs.at(pred_).to(torch::kFloat)), y = columns(field(batch, target_));
    const torch::Tensor m = mask_.of(batch, y);
    const torch::Tensor l = (x - y).abs() * m;
    LossResult r;
    r.total = l.sum() / m.sum().clamp_min(1);
    r.parts["l1"] = r.total.detach();
    r.per_sample = (l.sum(1) / m.sum(1).clamp_min(1)).detach();
    return r;
  }

 private:
  std::string pred_, target_;
  data::MaskField mask_;
};

FACET_REGISTER(loss_registry(), "ccc", "Sum over columns of 1 - CCC (batch concordance, EMMA's valence-arousal loss)",
               [](const Config& c) { return std::make_shared<CccLoss>(c); });
FACET_REGISTER(loss_registry(), "l1", "Masked mean absolute error (age, head pose)",
               [](const Config& c) { return std::make_shared<L1Loss>(c); });

}  // namespace
}  // namespace facet::losses
