// Mixed precision: a scoped autocast region (the C++ counterpart of torch.autocast) and the
// fp16 gradient scaler built from the ATen ops behind torch.amp.GradScaler.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <string>

namespace facet::train {

// Autocast on `device`'s type for the lifetime of the guard. Run forward and loss inside, and
// backward after leaving it. Autocast state is thread-local.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, std::optional<torch::ScalarType> dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Dynamic loss scaling for fp16 (defaults of torch.amp.GradScaler). Everything stays on the
// device: the caller reads `found_inf` together with its other per-step values, in one sync.
class GradScaler {
 public:
  explicit GradScaler(torch::Device device, double init_scale = 65536.0);
  torch::Tensor scale(const torch::Tensor& loss) const { return loss * scale_; }
  // Divides the gradients by the scale in place; returns found_inf, a 1-element float tensor on the
  // device that is > 0 if any gradient was inf/NaN (the step must then be skipped).
  torch::Tensor unscale_(const std::vector<torch::Tensor>& params);
  // Grows or backs off the scale after a step, given whether infs were found (identical on every
  // rank, since it is computed from the all-reduced gradients).
  void update(const torch::Tensor& found_inf);
  torch::Tensor& scale_tensor() { return scale_; }
  torch::Tensor& growth_tracker() { return growth_; }

 private:
  torch::Tensor scale_, growth_, found_inf_;
};

}  // namespace facet::train
