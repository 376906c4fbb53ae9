// Building a model without random initialisation, in a target dtype and on a target device: a
// 7-billion-parameter ViT in bf16 is 13 GB; built the usual way it would first take 26 GB of float32,
// random-initialised (minutes of kaiming_uniform_), only to be overwritten by its checkpoint.
//
//   {
//     models::ConstructionScope scope{torch::kBFloat16, /*defer_init=*/true};
//     model = model_registry().create(node);   // Facet's layers read the scope
//   }
//   models::init_weights(*model, list);         // must then cover every deferred tensor
//
// Under a scope, Facet's own layers (models::Linear, the ViT) allocate their tensors in the scope's
// dtype and device; with defer_init they allocate them empty (torch::empty: the pages are not even
// touched until the checkpoint is copied in) and record them as uninitialised, and Facet's init code
// (xavier, trunc-normal, ...) is skipped. LibTorch's own modules (LayerNorm, Conv2d, ...) ignore the
// scope: they are small, initialise themselves, and build_model casts them afterwards.
//
// An uninitialised tensor is garbage until something writes it: init_weights marks what it loads,
// and check_initialized() (init_weights runs it at the end) fails naming every tensor that is left.
// The scope is thread-local and nests (the inner one wins until it ends).
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

namespace facet::models {

struct ConstructionOptions {
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  bool defer_init = false;
};

class ConstructionScope {
 public:
  ConstructionScope(torch::Dtype dtype, bool defer_init, torch::Device device = torch::kCPU);
  explicit ConstructionScope(const ConstructionOptions& options);
  ~ConstructionScope();
  ConstructionScope(const ConstructionScope&) = delete;
  ConstructionScope& operator=(const ConstructionScope&) = delete;

  // The innermost scope's options on this thread; the defaults (float32, CPU, initialise) outside any.
  static const ConstructionOptions& current();

 private:
  ConstructionOptions previous_;
};

// True inside a scope with defer_init: skip random initialisation.
inline bool deferring_init() { return ConstructionScope::current().defer_init; }
// dtype + device of the current scope, for tensors a layer allocates.
torch::TensorOptions construction_tensor_options();

// A tensor of `shape` in the scope's dtype and device, uninitialised: recorded as such when the scope
// defers initialisation (the caller must then not initialise it), else the caller initialises it.
torch::Tensor empty_parameter(c10::IntArrayRef shape);

// --- tracking what is still garbage ----------------------------------------------------------------
// By tensor identity (the TensorImpl): survives module.to(dtype/device), which swaps the storage in place.
void mark_uninitialized(const torch::Tensor& t);
void mark_initialized(const torch::Tensor& t);
bool is_uninitialized(const torch::Tensor& t);
// Names of the module's parameters and buffers that are still uninitialised, in module order.
std::vector<std::string> uninitialized_tensors(const torch::nn::Module& module);
// Fails when any tensor of `module` is still uninitialised: "<context>: 3 tensors were never loaded
// (built without initialisation): blocks.0.attn.qkv.weight, ...".
void check_initialized(const torch::nn::Module& module, std::string_view context);

// module.to(device), the meta device included: there LibTorch's set_data refuses to swap a CPU
// tensor for a meta one, so each parameter still off meta (LibTorch's own layers: Conv2d, LayerNorm,
// ...) is replaced by an empty meta tensor of its shape, dtype and requires_grad, in the module's
// registry and in the weight / bias members of LibTorch's layers; buffers stay where they are
// (BatchNorm statistics: small, and a model on meta runs nothing). For `facet summary --meta`.
void to_device(torch::nn::Module& module, torch::Device device);

// A LibTorch module built inside a scope (LayerNorm, Conv2d: they initialise themselves in float32 on
// the CPU) moved to the scope's dtype and device, so a layer's parts agree; a no-op outside any scope.
void to_scope(torch::nn::Module& module);

// Casts every floating-point parameter and buffer to `dtype`, in place (integer buffers such as
// BatchNorm's num_batches_tracked stay integers, unlike torch::nn::Module::to(dtype)).
void cast_floating(torch::nn::Module& module, torch::Dtype dtype);

}  // namespace facet::models
