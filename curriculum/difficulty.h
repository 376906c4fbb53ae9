// Per-sample difficulty for curriculum samplers, estimated online from the training itself, as
// Mo-SCL measures it (Li, Han, Zhou, "Mixed-order self-paced curriculum learning for universal lesion
// detection", arXiv 2302.04677): from the loss *and* an uncertainty, each normalised, then combined.
// The paper's body is not available (medical.md §2.2); every choice below is ours and labelled:
//
//   loss         EMA over the sample's visits: e <- m e + (1 - m) l, the first visit sets e = l.
//                [choice] m = 0.9 — smooths augmentation noise, still follows the sample within a
//                few epochs.
//   uncertainty  `loss_std` (default, [choice] per medical.md §2.2(a)): the population standard
//                deviation of the sample's last K losses (K = window, default 5; needs >= 2 visits)
//                — no extra forward pass. `mc_dropout`: the score variance of T stochastic passes,
//                fed by the mc_dropout hook (train/hooks/mc_dropout.cpp); the latest value counts.
//                `none`: loss only.
//   normalise    `rank` (default, [choice]): the mean rank among the samples that have a value,
//                scaled to [0, 1] (ties share their mean rank) — insensitive to the scale and the
//                heavy tail of detection losses; `minmax`: (v - min) / (max - min).
//                [choice] A sample with no value yet counts as 0.5, the middle of the order.
//   combine      d = norm(loss) + weight * norm(uncertainty) ([choice] weight = lambda = 1).
//
//   data:
//     sampler:
//       name: mo_scl
//       difficulty: {momentum: 0.9, uncertainty: loss_std, window: 5, normalize: rank, weight: 1.0}
#pragma once

#include "core/config.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace facet::curriculum {

struct DifficultyOptions {
  double momentum = 0.9;
  std::string uncertainty = "loss_std";  // loss_std | mc_dropout | none
  int64_t window = 5;
  std::string normalize = "rank";  // rank | minmax
  double weight = 1.0;

  // From the sampler's `difficulty` node (absent: the defaults).
  static DifficultyOptions from(const Config& sampler);
};

// Values in [0, 1] (rank or min-max) for the entries of `values` where `known` is true; 0.5 elsewhere.
std::vector<double> normalize_scores(const std::vector<double>& values, const std::vector<bool>& known, const std::string& method);

class DifficultyEstimator {
 public:
  DifficultyEstimator(int64_t size, DifficultyOptions options);

  // Per-sample training losses of one step (the same on every rank).
  void observe_losses(const torch::Tensor& indices, const torch::Tensor& losses);
  // MC-dropout score variances (uncertainty: mc_dropout).
  void observe_uncertainty(const torch::Tensor& indices, const torch::Tensor& values);

  int64_t size() const { return size_; }
  const DifficultyOptions& options() const { return options_; }
  int64_t visits(int64_t i) const { return visits_[static_cast<size_t>(i)]; }
  // The loss EMA of each sample (0 where unseen).
  const std::vector<double>& loss_ema() const { return ema_; }
  // The raw uncertainty of each sample and whether it has one.
  std::vector<double> uncertainty(std::vector<bool>* known = nullptr) const;
  // The combined, normalised difficulty of every sample (higher: harder).
  std::vector<double> difficulty() const;

  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

 private:
  int64_t size_;
  DifficultyOptions options_;
  std::vector<double> ema_;
  std::vector<int64_t> visits_;
  std::vector<double> history_;  // [size, window] ring of the last losses
  std::vector<double> mc_;       // latest MC-dropout variance
  std::vector<bool> mc_known_;
};

}  // namespace facet::curriculum
