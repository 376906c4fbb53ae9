#include "models/generative/ddim.h"

#include "core/error.h"

namespace facet::models {

DdimSampler::DdimSampler(const NoiseSchedule& schedule, DdimOptions options) : schedule_(schedule), options_(options) {
  const int64_t T = schedule.options().num_timesteps;
  if (options_.steps < 1 || options_.steps > T) fail("DDIM: {} sampling steps for a {}-step schedule", options_.steps, T);
  if (options_.eta < 0) fail("DDIM: eta must be >= 0, got {}", options_.eta);
  stride_ = T / options_.steps;
  if ((options_.steps - 1) * stride_ + options_.steps_offset >= T)
    fail("DDIM: {} steps spaced {} apart from {} pass the schedule's last timestep {}; take fewer steps", options_.steps, stride_,
         options_.steps_offset, T - 1);
  for (int64_t k = options_.steps - 1; k >= 0; --k) timesteps_.push_back(k * stride_ + options_.steps_offset);
}

DdimStep DdimSampler::step(const torch::Tensor& model_output, int64_t t, const torch::Tensor& sample, const torch::Tensor& noise) const {
  const torch::Tensor& abar = schedule_.alphas_cumprod();
  const int64_t prev = t - stride_;
  // Scalars in float32, as diffusers indexes its float32 alphas_cumprod.
  const torch::Tensor a_t = abar[t];
  const torch::Tensor a_prev = prev >= 0 ? abar[prev] : (options_.set_alpha_to_one ? torch::ones({}, abar.options()) : abar[0]);
  const torch::Tensor b_t = 1 - a_t;
  const auto to = [&](const torch::Tensor& s) { return s.to(sample.device()); };
  const std::string& prediction = schedule_.options().prediction;
  torch::Tensor x0, eps;
  if (prediction == "epsilon") {
    x0 = (sample - to(b_t.sqrt()) * model_output) / to(a_t.sqrt());
    eps = model_output;
  } else if (prediction == "v_prediction") {
    x0 = to(a_t.sqrt()) * sample - to(b_t.sqrt()) * model_output;
    eps = to(a_t.sqrt()) * model_output + to(b_t.sqrt()) * sample;
  } else {
    x0 = model_output;
    eps = (sample - to(a_t.sqrt()) * x0) / to(b_t.sqrt());
  }
  const torch::Tensor variance = (1 - a_prev) / b_t * (1 - a_t / a_prev);
  const torch::Tensor sigma = options_.eta * variance.sqrt();
  torch::Tensor prev_sample = to(a_prev.sqrt()) * x0 + to((1 - a_prev - sigma * sigma).sqrt()) * eps;
  if (options_.eta > 0) {
    if (!noise.defined()) fail("DDIM: eta {} needs noise", options_.eta);
    prev_sample = prev_sample + to(sigma) * noise;
  }
  return {prev_sample, x0};
}

}  // namespace facet::models
