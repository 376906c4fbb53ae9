#include "models/layers/construction.h"

#include "core/error.h"
#include "core/text.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace facet::models {
namespace {

thread_local ConstructionOptions current_options;

using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

// TensorImpl address -> weak handle: the handle tells a live tensor from a new one that reuses the
// address of a dead one. Guarded: models may be built on several threads.
struct Pending {
  std::mutex mutex;
  std::unordered_map<const c10::TensorImpl*, WeakImpl> tensors;
  size_t sweep_at = 1024;
};

Pending& pending() {
  static Pending p;
  return p;
}

}  // namespace

ConstructionScope::ConstructionScope(torch::Dtype dtype, bool defer_init, torch::Device device)
    : ConstructionScope(ConstructionOptions{dtype, device, defer_init}) {}

ConstructionScope::ConstructionScope(const ConstructionOptions& options) : previous_(current_options) {
  if (!c10::isFloatingType(options.dtype))
    fail("a model is built in a floating-point dtype, not {}", c10::toString(options.dtype));
  current_options = options;
}

ConstructionScope::~ConstructionScope() { current_options = previous_; }

const ConstructionOptions& ConstructionScope::current() { return current_options; }

torch::TensorOptions construction_tensor_options() {
  return torch::TensorOptions().dtype(current_options.dtype).device(current_options.device);
}

torch::Tensor empty_parameter(c10::IntArrayRef shape) {
  torch::Tensor t = torch::empty(shape, construction_tensor_options());
  if (current_options.defer_init) mark_uninitialized(t);
  return t;
}

void mark_uninitialized(const torch::Tensor& t) {
  if (!t.defined()) return;
  auto& p = pending();
  std::lock_guard lock(p.mutex);
  if (p.tensors.size() >= p.sweep_at) {
    std::erase_if(p.tensors, [](const auto& item) { return item.second.expired(); });
    p.sweep_at = std::max<size_t>(1024, 2 * p.tensors.size());
  }
  p.tensors.insert_or_assign(t.unsafeGetTensorImpl(), WeakImpl(t.getIntrusivePtr()));
}

void mark_initialized(const torch::Tensor& t) {
  if (!t.defined()) return;
  auto& p = pending();
  std::lock_guard lock(p.mutex);
  p.tensors.erase(t.unsafeGetTensorImpl());
}

bool is_uninitialized(const torch::Tensor& t) {
  if (!t.defined()) return false;
  auto& p = pending();
  std::lock_guard lock(p.mutex);
  auto it = p.tensors.find(t.unsafeGetTensorImpl());
  if (it == p.tensors.end()) return false;
  if (it->second.expired()) {  // a dead tensor's address, reused
    p.tensors.erase(it);
    return false;
  }
  return true;
}

std::vector<std::string> uninitialized_tensors(const torch::nn::Module& module) {
  std::vector<std::string> out;
  for (const auto& p : module.named_parameters())
    if (is_uninitialized(p.value())) out.push_back(p.key());
  for (const auto& b : module.named_buffers())
    if (is_uninitialized(b.value())) out.push_back(b.key());
  return out;
}

void check_initialized(const torch::nn::Module& module, std::string_view context) {
  const auto left = uninitialized_tensors(module);
  if (left.empty()) return;
  std::vector<std::string> shown(left.begin(), left.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(left.size(), 8)));
  fail("{}: {} tensor{} never loaded after a build without initialisation (their values are garbage): {}{}", context,
       left.size(), left.size() == 1 ? " was" : "s were", join(shown), left.size() > shown.size() ? ", ..." : "");
}

namespace {

// The registry of a module's own parameters (protected in torch::nn::Module), reached through a
// pointer to member named in a derived class, which the language allows.
struct ParameterRegistry : torch::nn::Module {
  static torch::OrderedDict<std::string, torch::Tensor>& of(torch::nn::Module& m) { return m.*(&ParameterRegistry::parameters_); }
};

// The handles LibTorch's layers keep beside their registry, pointed at the new tensors.
template <typename Impl>
bool relink(torch::nn::Module& m, const torch::OrderedDict<std::string, torch::Tensor>& params) {
  auto* impl = dynamic_cast<Impl*>(&m);
  if (!impl) return false;
  if (const auto* w = params.find("weight")) impl->weight = *w;
  if constexpr (requires { impl->bias; })
    if (const auto* b = params.find("bias")) impl->bias = *b;
  return true;
}

}  // namespace

void to_device(torch::nn::Module& module, torch::Device device) {
  if (device.type() != torch::kMeta) {
    module.to(device);
    return;
  }
  torch::NoGradGuard no_grad;
  auto move = [](torch::nn::Module& m) {
    auto& params = ParameterRegistry::of(m);
    bool moved = false;
    for (auto& item : params) {
      torch::Tensor& t = item.value();
      if (!t.defined() || t.is_meta()) continue;
      auto meta = torch::empty(t.sizes(), torch::TensorOptions().dtype(t.scalar_type()).device(torch::kMeta));
      meta.set_requires_grad(t.requires_grad());
      t = meta;
      moved = true;
    }
    if (!moved) return;
    relink<torch::nn::LinearImpl>(m, params) || relink<torch::nn::Conv1dImpl>(m, params) ||
        relink<torch::nn::Conv2dImpl>(m, params) || relink<torch::nn::Conv3dImpl>(m, params) ||
        relink<torch::nn::LayerNormImpl>(m, params) || relink<torch::nn::GroupNormImpl>(m, params) ||
        relink<torch::nn::EmbeddingImpl>(m, params) || relink<torch::nn::BatchNorm1dImpl>(m, params) ||
        relink<torch::nn::BatchNorm2dImpl>(m, params) || relink<torch::nn::BatchNorm3dImpl>(m, params);
  };
  move(module);
  for (const auto& m : module.modules(/*include_self=*/false)) move(*m);
}

void to_scope(torch::nn::Module& module) {
  const ConstructionOptions& o = current_options;
  if (o.dtype != torch::kFloat32) cast_floating(module, o.dtype);
  if (o.device != torch::Device(torch::kCPU)) to_device(module, o.device);
}

void cast_floating(torch::nn::Module& module, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  auto cast = [&](torch::Tensor& t) {
    if (t.defined() && t.is_floating_point() && t.scalar_type() != dtype) t.set_data(t.to(dtype));
  };
  for (auto& p : module.parameters()) cast(p);
  for (auto& b : module.buffers()) cast(b);
}

}  // namespace facet::models
