// Regression metrics from summable moments: the concordance correlation coefficient (population
// statistics, face.md §D: 2 s_xy / (s_x^2 + s_y^2 + (m_x - m_y)^2)) and the mean absolute error,
// per column, unknown targets masked.
//
//   metrics: [{name: ccc, pred: va, target: va, mask: va_mask, names: [valence, arousal]}]
//   metrics: [{name: mae, pred: age, target: age, names: [age]}]
#include "metrics/metric.h"

namespace facet::metrics {
namespace {

torch::Tensor columns(const torch::Tensor& t) { return t.dim() == 1 ? t.unsqueeze(1) : t; }

// Prediction, target and mask of a batch, [B, D] float64 on the CPU.
struct Columns {
  torch::Tensor x, y, m;
};
Columns read(const TensorDict& outputs, const data::Batch& batch, const std::string& pred, const std::string& target,
             const data::MaskField& mask) {
  Columns c;
  c.x = columns(outputs.at(pred).detach().to(torch::kCPU, torch::kDouble));
  if (!batch.fields.contains(target)) fail("metric: the batch has no field \"{}\"", target);
  c.y = columns(batch.fields.at(target).to(torch::kCPU, torch::kDouble));
  c.m = mask.of(batch, c.y);
  if (c.x.sizes() != c.y.sizes()) fail("metric: {} is {}, {} is {}", pred, c.x.sizes(), target, c.y.sizes());
  return c;
}

std::string column_name(const std::vector<std::string>& names, int64_t i) {
  return i < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(i)] : std::to_string(i);
}

class Ccc : public Metric {
 public:
  explicit Ccc(const Config& c)
      : pred_(c.get<std::string>("pred", "va")),
        target_(c.get<std::string>("target", "va")),
        mask_(c, "mask", "va_mask"),
        names_(c.get<std::vector<std::string>>("names", {"valence", "arousal"})) {
    reset();
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const auto [x, y, m] = read(outputs, batch, pred_, target_, mask_);
    if (x.size(1) != static_cast<int64_t>(names_.size()))
      fail("ccc: {} has {} columns, names {}", pred_, x.size(1), names_.size());
    moments_ += torch::stack({m.sum(0), (x * m).sum(0), (y * m).sum(0), (x * x * m).sum(0), (y * y * m).sum(0), (x * y * m).sum(0)});
  }

  std::map<std::string, double> compute() const override {
    const auto n = moments_[0].clamp_min(1);
    const auto mx = moments_[1] / n, my = moments_[2] / n;
    const auto vx = moments_[3] / n - mx * mx, vy = moments_[4] / n - my * my, cxy = moments_[5] / n - mx * my;
    const auto ccc = 2 * cxy / (vx + vy + (mx - my).pow(2)).clamp_min(1e-12);
    std::map<std::string, double> out;
    for (int64_t i = 0; i < ccc.numel(); ++i) out["ccc/" + column_name(names_, i)] = ccc[i].item<double>();
    out["ccc/mean"] = ccc.mean().item<double>();
    return out;
  }

  void reset() override { moments_ = torch::zeros({6, static_cast<int64_t>(names_.size())}, torch::kDouble); }
  torch::Tensor state() const override { return moments_.flatten(); }
  void load_state(const torch::Tensor& summed) override { moments_ = summed.view({6, -1}).clone(); }

 private:
  std::string pred_, target_;
  data::MaskField mask_;
  std::vector<std::string> names_;
  torch::Tensor moments_;  // [6, D]: n, Σx, Σy, Σx², Σy², Σxy over known entries
};

class Mae : public Metric {
 public:
  explicit Mae(const Config& c)
      : pred_(c.get<std::string>("pred")),
        target_(c.get<std::string>("target", pred_)),
        mask_(c, "mask", target_ + "_mask"),
        names_(c.get<std::vector<std::string>>("names", {pred_})) {
    reset();
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const auto [x, y, m] = read(outputs, batch, pred_, target_, mask_);
    if (x.size(1) != static_cast<int64_t>(names_.size()))
      fail("mae: {} has {} columns, names {}", pred_, x.size(1), names_.size());
    sums_ += torch::stack({m.sum(0), ((x - y).abs() * m).sum(0)});
  }

  std::map<std::string, double> compute() const override {
    const auto mae = sums_[1] / sums_[0].clamp_min(1);
    std::map<std::string, double> out;
    for (int64_t i = 0; i < mae.numel(); ++i) out["mae/" + column_name(names_, i)] = mae[i].item<double>();
    out["mae/mean"] = mae.mean().item<double>();
    return out;
  }

  void reset() override { sums_ = torch::zeros({2, static_cast<int64_t>(names_.size())}, torch::kDouble); }
  torch::Tensor state() const override { return sums_.flatten(); }
  void load_state(const torch::Tensor& summed) override { sums_ = summed.view({2, -1}).clone(); }

 private:
  std::string pred_, target_;
  data::MaskField mask_;
  std::vector<std::string> names_;
  torch::Tensor sums_;  // [2, D]: n, Σ|x - y|
};

FACET_REGISTER(metric_registry(), "ccc", "Concordance correlation coefficient per column (valence, arousal) and mean",
               [](const Config& c) { return std::make_shared<Ccc>(c); });
FACET_REGISTER(metric_registry(), "mae", "Mean absolute error per column (age, head pose) and mean",
               [](const Config& c) { return std::make_shared<Mae>(c); });

}  // namespace
}  // namespace facet::metrics
