#include "models/generative/noise_schedule.h"

#include <cmath>

namespace facet::models {

NoiseScheduleOptions NoiseScheduleOptions::from(const Config& c, const NoiseScheduleOptions& base) {
  NoiseScheduleOptions o = base;
  o.num_timesteps = c.get<int64_t>("num_timesteps", o.num_timesteps);
  if (o.num_timesteps < 1)
    fail("{}: {}: expected >= 1, got {}", c.where("num_timesteps"), c.full_key("num_timesteps"), o.num_timesteps);
  o.beta_schedule = c.get<std::string>("beta_schedule", o.beta_schedule);
  if (o.beta_schedule != "linear" && o.beta_schedule != "scaled_linear" && o.beta_schedule != "squaredcos_cap_v2")
    fail("{}: {}: expected linear, scaled_linear or squaredcos_cap_v2, got \"{}\"", c.where("beta_schedule"),
         c.full_key("beta_schedule"), o.beta_schedule);
  o.beta_start = c.get<double>("beta_start", o.beta_start);
  o.beta_end = c.get<double>("beta_end", o.beta_end);
  if (!(o.beta_start > 0 && o.beta_start <= o.beta_end && o.beta_end < 1))
    fail("{}: {}: expected 0 < beta_start <= beta_end < 1, got {} and {}", c.where("beta_start"), c.full_key("beta_start"),
         o.beta_start, o.beta_end);
  o.prediction = c.get<std::string>("prediction", o.prediction);
  if (o.prediction != "epsilon" && o.prediction != "v_prediction" && o.prediction != "sample")
    fail("{}: {}: expected epsilon, v_prediction or sample, got \"{}\"", c.where("prediction"), c.full_key("prediction"),
         o.prediction);
  return o;
}

NoiseSchedule::NoiseSchedule(NoiseScheduleOptions options) : options_(std::move(options)) {
  const int64_t T = options_.num_timesteps;
  if (options_.beta_schedule == "linear") {
    betas_ = torch::linspace(options_.beta_start, options_.beta_end, T, torch::kFloat);
  } else if (options_.beta_schedule == "scaled_linear") {  // the latent diffusion schedule
    betas_ = torch::linspace(std::sqrt(options_.beta_start), std::sqrt(options_.beta_end), T, torch::kFloat).pow(2);
  } else {  // Nichol & Dhariwal's cosine ᾱ, as diffusers' betas_for_alpha_bar (max beta 0.999)
    auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
    std::vector<float> b;
    for (int64_t i = 0; i < T; ++i)
      b.push_back(static_cast<float>(std::min(1 - alpha_bar(double(i + 1) / T) / alpha_bar(double(i) / T), 0.999)));
    betas_ = torch::tensor(b, torch::kFloat);
  }
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
}

std::pair<torch::Tensor, torch::Tensor> NoiseSchedule::coefficients(const torch::Tensor& timesteps,
                                                                     const torch::Tensor& like) const {
  const torch::Tensor abar = alphas_cumprod_.to(like.device()).index_select(0, timesteps.to(like.device(), torch::kLong));
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return {abar.sqrt().view(shape).to(like.dtype()), (1 - abar).sqrt().view(shape).to(like.dtype())};
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  const auto [a, s] = coefficients(timesteps, x0);
  return a * x0 + s * noise;
}

torch::Tensor NoiseSchedule::target(const torch::Tensor& x0, const torch::Tensor& noise,
                                    const torch::Tensor& timesteps) const {
  if (options_.prediction == "epsilon") return noise;
  if (options_.prediction == "sample") return x0;
  const auto [a, s] = coefficients(timesteps, x0);
  return a * noise - s * x0;
}

}  // namespace facet::models
