// The forward (noising) process of denoising diffusion (Ho et al. 2020), as diffusers'
// DDPMScheduler defines it for training: a beta schedule over T timesteps, ᾱ_t = ∏(1 - β),
// x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, and the velocity target v = √ᾱ_t ε - √(1-ᾱ_t) x0 (Salimans & Ho 2022).
//
//   step: {name: diffusion, num_timesteps: 1000, beta_schedule: scaled_linear,
//          beta_start: 0.00085, beta_end: 0.012, prediction: epsilon}   # Stable Diffusion's values
#pragma once

#include "core/config.h"

#include <torch/torch.h>

namespace facet::models {

struct NoiseScheduleOptions {
  int64_t num_timesteps = 1000;
  std::string beta_schedule = "linear";  // linear | scaled_linear | squaredcos_cap_v2
  double beta_start = 0.0001, beta_end = 0.02;
  std::string prediction = "epsilon";    // epsilon | v_prediction | sample

  // The keys of `c` over `base` (a model's own schedule), or over these defaults.
  static NoiseScheduleOptions from(const Config& c, const NoiseScheduleOptions& base);
  static NoiseScheduleOptions from(const Config& c) { return from(c, NoiseScheduleOptions{}); }
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(NoiseScheduleOptions options);

  const NoiseScheduleOptions& options() const { return options_; }
  const torch::Tensor& betas() const { return betas_; }                  // [T] float32
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  // [T] float32

  // x_t for clean x0 [B, ...], noise like x0 and integer timesteps [B].
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& timesteps) const;
  // What the network is trained to predict: ε, v or x0 (options().prediction).
  torch::Tensor target(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& timesteps) const;

 private:
  // √ᾱ_t and √(1-ᾱ_t) at `timesteps`, shaped to broadcast against `like`.
  std::pair<torch::Tensor, torch::Tensor> coefficients(const torch::Tensor& timesteps, const torch::Tensor& like) const;

  NoiseScheduleOptions options_;
  torch::Tensor betas_, alphas_cumprod_;
};

}  // namespace facet::models
