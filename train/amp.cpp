#include "train/amp.h"

#include "core/error.h"

namespace facet::train {

AutocastGuard::AutocastGuard(torch::Device device, std::optional<torch::ScalarType> dtype) : type_(device.type()) {
  if (!dtype) return;
  active_ = true;
  previous_enabled_ = at::autocast::is_autocast_enabled(type_);
  previous_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, *dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, previous_enabled_);
  at::autocast::set_autocast_dtype(type_, previous_dtype_);
}

GradScaler::GradScaler(torch::Device device, double init_scale)
    : scale_(torch::full({1}, init_scale, torch::TensorOptions().dtype(torch::kFloat).device(device))),
      growth_(torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(device))),
      found_inf_(torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(device))) {}

torch::Tensor GradScaler::unscale_(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  found_inf_.zero_();
  if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
  return found_inf_;
}

void GradScaler::update(const torch::Tensor& found_inf) {
  at::_amp_update_scale_(scale_, growth_, found_inf, /*growth_factor=*/2.0, /*backoff_factor=*/0.5,
                         /*growth_interval=*/2000);
}

}  // namespace facet::train
