#include "models/llm/checkpointing.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

namespace facet::models::llm {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Generator generator_for(const torch::Device& device) {
  return device.is_cpu() ? at::detail::getDefaultCPUGenerator() : at::globalContext().defaultGenerator(device);
}

// The device types whose autocast state the recomputation must reproduce: the input's, and the
// CPU's (CPU ops inside a CUDA layer), as torch.utils.checkpoint saves both.
std::vector<c10::DeviceType> autocast_types(const torch::Device& device) {
  if (device.is_cpu()) return {c10::DeviceType::CPU};
  return {device.type(), c10::DeviceType::CPU};
}

// Backward runs outside the forward's autocast region (the trainer closes it before backward), so
// the recomputation re-enters the autocast state the forward ran under: otherwise a bf16 forward
// is recomputed, and differentiated, in fp32 — other gradients, and on a GPU several times slower.
class ReenteredAutocast {
 public:
  ReenteredAutocast(c10::DeviceType type, bool enabled, at::ScalarType dtype)
      : type_(type), enabled_(enabled), previous_enabled_(at::autocast::is_autocast_enabled(type)),
        previous_dtype_(at::autocast::get_autocast_dtype(type)) {
    at::autocast::set_autocast_enabled(type, enabled);
    at::autocast::set_autocast_dtype(type, dtype);
    if (enabled_) at::autocast::increment_nesting();
  }
  ~ReenteredAutocast() {
    if (enabled_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, previous_enabled_);
    at::autocast::set_autocast_dtype(type_, previous_dtype_);
  }
  ReenteredAutocast(const ReenteredAutocast&) = delete;
  ReenteredAutocast& operator=(const ReenteredAutocast&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_, previous_enabled_;
  at::ScalarType previous_dtype_;
};

// Inputs: x, cos, sin, mask, then the layer's trainable parameters (so their gradients flow back
// through this node even when x needs none: frozen embeddings under LoRA).
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                               const torch::Tensor& mask, at::TensorList params, LlamaDecoderLayer layer) {
    auto generator = generator_for(x.device());
    ctx->saved_data["rng"] = generator.get_state();
    for (const auto type : autocast_types(x.device())) {
      const std::string key = std::string("autocast.") + c10::DeviceTypeName(type, /*lower_case=*/true);
      ctx->saved_data[key + ".enabled"] = at::autocast::is_autocast_enabled(type);
      ctx->saved_data[key + ".dtype"] = static_cast<int64_t>(at::autocast::get_autocast_dtype(type));
    }
    ctx->save_for_backward({x, cos, sin, mask});
    ctx->saved_data["layer"] = c10::IValue(static_cast<int64_t>(reinterpret_cast<intptr_t>(layer.get())));
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    torch::NoGradGuard no_grad;
    return layer->forward(x, cos, sin, unwrap(mask), nullptr);
  }

  // Autograd needs defined inputs: no mask travels as an empty tensor.
  static torch::Tensor wrap(const torch::Tensor& mask) { return mask.defined() ? mask : torch::empty({0}, torch::kBool); }
  static torch::Tensor unwrap(const torch::Tensor& mask) { return mask.numel() == 0 ? torch::Tensor() : mask; }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // The model owns the layer and outlives its backward pass.
    auto* layer = reinterpret_cast<LlamaDecoderLayerImpl*>(static_cast<intptr_t>(ctx->saved_data["layer"].toInt()));
    const int64_t n_params = ctx->saved_data["n_params"].toInt();
    auto x = saved[0].detach().requires_grad_(ctx->needs_input_grad(0));
    torch::Tensor out;
    {
      auto generator = generator_for(x.device());
      const auto current = generator.get_state();
      generator.set_state(ctx->saved_data["rng"].toTensor());
      std::vector<std::unique_ptr<ReenteredAutocast>> autocast;
      for (const auto type : autocast_types(x.device())) {
        const std::string key = std::string("autocast.") + c10::DeviceTypeName(type, /*lower_case=*/true);
        autocast.push_back(std::make_unique<ReenteredAutocast>(
            type, ctx->saved_data[key + ".enabled"].toBool(),
            static_cast<at::ScalarType>(ctx->saved_data[key + ".dtype"].toInt())));
      }
      torch::AutoGradMode grad(true);
      out = layer->forward(x, saved[1], saved[2], unwrap(saved[3]), nullptr);
      generator.set_state(current);
    }
    variable_list inputs, params;
    if (x.requires_grad()) inputs.push_back(x);
    for (auto& p : layer->parameters())
      if (p.requires_grad()) params.push_back(p);
    TORCH_CHECK(static_cast<int64_t>(params.size()) == n_params, "checkpointed layer: trainable parameters changed");
    inputs.insert(inputs.end(), params.begin(), params.end());
    variable_list g = inputs.empty() ? variable_list{}
                                     : torch::autograd::grad({out}, inputs, {grads[0]}, /*retain_graph=*/false,
                                                             /*create_graph=*/false, /*allow_unused=*/true);
    variable_list result;
    size_t k = 0;
    result.push_back(x.requires_grad() ? g[k++] : torch::Tensor());
    result.push_back({});  // cos
    result.push_back({});  // sin
    result.push_back({});  // mask
    for (int64_t i = 0; i < n_params; ++i) result.push_back(g[k++]);
    result.push_back({});  // layer
    return result;
  }

};

}  // namespace

torch::Tensor checkpointed_layer(LlamaDecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& cos,
                                 const torch::Tensor& sin, const torch::Tensor& mask) {
  variable_list params;
  for (auto& p : layer->parameters())
    if (p.requires_grad()) params.push_back(p);
  return CheckpointedLayer::apply(x, cos, sin, CheckpointedLayer::wrap(mask), at::TensorList(params), layer);
}

}  // namespace facet::models::llm
