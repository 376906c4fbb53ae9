#include "models/layers/linear.h"

#include <cmath>

namespace facet::models {

LinearImpl::LinearImpl(const LinearOptions& o) : options(o) {
  weight = register_parameter("weight", empty_parameter({o.out_features(), o.in_features()}));
  if (o.bias()) bias = register_parameter("bias", empty_parameter({o.out_features()}));
  if (!deferring_init()) reset_parameters();
}

void LinearImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = options.in_features() > 0 ? 1.0 / std::sqrt(static_cast<double>(options.in_features())) : 0.0;
    torch::nn::init::uniform_(bias, -bound, bound);
  }
  mark_initialized(weight);
  mark_initialized(bias);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  for (const auto& adapter : adapters_) y = adapter->forward(x, std::move(y), is_training());
  return y;
}

void LinearImpl::pretty_print(std::ostream& stream) const {
  stream << "facet::models::Linear(in_features=" << options.in_features() << ", out_features=" << options.out_features()
         << ", bias=" << (options.bias() ? "true" : "false");
  for (const auto& a : adapters_) stream << ", " << a->kind();
  stream << ")";
}

}  // namespace facet::models
