// DDIM sampling (Song et al., ICLR 2021) as diffusers' DDIMScheduler does it at Stable Diffusion's
// settings: `steps` timesteps spaced "leading" (k * T/steps + steps_offset, descending), and the
// update x_{t-Δ} = √ᾱ_prev x̂0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z with σ = eta √((1-ᾱ_prev)/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_prev);
// eta 0 is deterministic. Below t = 0 the previous ᾱ is ᾱ_0 (set_alpha_to_one false, SD's choice)
// or 1. The network's output is read as the schedule's prediction type (ε, v or x0).
#pragma once

#include "models/generative/noise_schedule.h"

#include <torch/torch.h>

#include <vector>

namespace facet::models {

struct DdimOptions {
  int64_t steps = 50;
  int64_t steps_offset = 1;
  bool set_alpha_to_one = false;
  double eta = 0.0;
};

struct DdimStep {
  torch::Tensor prev_sample, pred_original_sample;
};

class DdimSampler {
 public:
  DdimSampler(const NoiseSchedule& schedule, DdimOptions options);

  const std::vector<int64_t>& timesteps() const { return timesteps_; }  // descending
  // One update from `sample` at timestep t with the network's output; `noise` (like sample) is used
  // only when eta > 0.
  DdimStep step(const torch::Tensor& model_output, int64_t t, const torch::Tensor& sample, const torch::Tensor& noise = {}) const;

 private:
  const NoiseSchedule& schedule_;
  DdimOptions options_;
  std::vector<int64_t> timesteps_;
  int64_t stride_;
};

}  // namespace facet::models
