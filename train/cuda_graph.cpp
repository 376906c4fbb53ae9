#include "train/cuda_graph.h"

#include "core/error.h"

#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

namespace facet::train {

struct GraphedFunction::State {
  at::cuda::CUDAGraph forward, backward;
  TensorDict inputs;                     // what every call copies its inputs into
  TensorDict outputs;                    // the forward graph writes these
  std::vector<std::string> differentiable;  // names of the outputs the backward graph takes gradients of
  std::vector<torch::Tensor> grad_outputs;  // their incoming gradients, copied in before a backward replay
  std::vector<torch::Tensor> grad_params;   // the backward graph writes these (undefined: unused parameter)
};

namespace {

// The backward of one graphed call: the outputs' gradients into the static buffers, one replay,
// the parameters' gradients out to their accumulators.
class GraphedBackward : public torch::autograd::Node {
 public:
  GraphedBackward(std::shared_ptr<GraphedFunction::State> state, const std::vector<torch::Tensor>& params)
      : state_(std::move(state)), params_(params) {}
  std::string name() const override { return "GraphedBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    for (size_t i = 0; i < state_->grad_outputs.size(); ++i) {
      if (i < grads.size() && grads[i].defined()) state_->grad_outputs[i].copy_(grads[i]);
      else state_->grad_outputs[i].zero_();
    }
    state_->backward.replay();
    torch::autograd::variable_list out;
    out.reserve(state_->grad_params.size());
    for (size_t i = 0; i < state_->grad_params.size(); ++i) {
      const torch::Tensor& g = state_->grad_params[i];
      // A parameter without a gradient yet would take the tensor itself as its .grad (LibTorch's
      // accumulator steals a gradient nobody else holds) and the next replay would overwrite it:
      // it gets a copy. One that has a gradient adds this one to it in place.
      if (!g.defined()) out.emplace_back();
      else out.push_back(params_[i].grad().defined() ? g.detach() : g.clone());
    }
    return out;
  }

 private:
  std::shared_ptr<GraphedFunction::State> state_;
  std::vector<torch::Tensor> params_;
};

// The floating outputs that require a gradient, in name order.
std::vector<std::string> differentiable(const TensorDict& outputs) {
  std::vector<std::string> names;
  for (const auto& [name, t] : outputs)
    if (t.defined() && t.requires_grad()) names.push_back(name);
  return names;
}

std::vector<torch::Tensor> pick(const TensorDict& d, const std::vector<std::string>& names) {
  std::vector<torch::Tensor> out;
  for (const auto& n : names) out.push_back(d.at(n));
  return out;
}

}  // namespace

GraphedFunction::GraphedFunction(Function function, std::vector<torch::Tensor> params, torch::nn::Module* module,
                                 int warmup)
    : function_(std::move(function)), module_(module), warmup_(warmup) {
  for (auto& p : params)
    if (p.requires_grad()) params_.push_back(std::move(p));
}

GraphedFunction::~GraphedFunction() = default;

bool GraphedFunction::captured() const { return state_ != nullptr; }

bool GraphedFunction::matches(const TensorDict& inputs) const {
  if (inputs.size() != state_->inputs.size()) return false;
  for (const auto& [name, t] : inputs) {
    if (!state_->inputs.contains(name)) return false;
    const torch::Tensor& s = state_->inputs.at(name);
    if (t.sizes() != s.sizes() || t.scalar_type() != s.scalar_type() || t.device() != s.device()) return false;
  }
  return true;
}

void GraphedFunction::capture(const TensorDict& inputs) {
  if (inputs.empty()) fail("train.cuda_graph: the graphed function has no inputs");
  const torch::Device device = inputs.begin()->second.device();
  for (const auto& [name, t] : inputs) {
    if (!t.is_cuda() || t.device() != device)
      fail("train.cuda_graph: input \"{}\" is on {}; a CUDA graph needs every input on one CUDA device ({})", name,
           t.device().str(), device.str());
    // The graphed backward gives gradients to the parameters only (a batch's fields need none).
    if (t.requires_grad()) fail("train.cuda_graph: input \"{}\" requires a gradient, which the graphed step cannot give", name);
  }
  auto s = std::make_shared<State>();
  for (const auto& [name, t] : inputs) s->inputs[name] = t.detach().clone();

  // The warm-up trains nothing, but its forward passes move BatchNorm's running statistics: saved
  // here, put back before the capture (which records kernels without running them).
  std::vector<std::pair<torch::Tensor, torch::Tensor>> buffers;
  if (module_)
    for (auto& b : module_->buffers()) buffers.emplace_back(b, b.clone());
  // Nor may it use up the random stream: the first replay draws what the eager step would have.
  at::Generator generator = at::cuda::detail::getDefaultCUDAGenerator(device.index());
  at::Tensor random_state;
  {
    const std::lock_guard<std::mutex> lock(generator.mutex());
    random_state = generator.get_state();
  }

  // Capture runs on a side stream (CUDA refuses to capture the legacy default stream), ordered
  // after what the current stream has queued, and the current stream waits for it after.
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
  at::cuda::CUDAEvent before, after;
  before.record(current);
  before.block(side);
  // Autocast's cache of casted weights would keep tensors from the capture alive across replays.
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  try {
    const c10::cuda::CUDAStreamGuard on_side(side);
    for (int i = 0; i < warmup_; ++i) {
      const TensorDict out = function_(s->inputs);
      const auto names = differentiable(out);
      if (names.empty() || params_.empty()) continue;
      std::vector<torch::Tensor> ones;
      for (const auto& t : pick(out, names)) ones.push_back(torch::ones_like(t));
      torch::autograd::grad(pick(out, names), params_, ones, /*retain_graph=*/false, /*create_graph=*/false,
                            /*allow_unused=*/true);
    }
    {
      const torch::NoGradGuard no_grad;
      for (auto& [b, saved] : buffers) b.copy_(saved);
      const std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(random_state);
    }
    // As torch.cuda.graph does before a capture: the warm-up's cached blocks go back to the device,
    // so that the graphs' private pool does not sit beside them.
    side.synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    // Thread-local capture mode: the loader's worker threads pin host memory while we capture, which
    // the global mode would refuse from any thread; the capturing stream records whatever is queued
    // on it, from this thread or from the autograd engine's.
    s->forward.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    s->outputs = function_(s->inputs);
    s->forward.capture_end();
    s->differentiable = params_.empty() ? std::vector<std::string>{} : differentiable(s->outputs);
    if (!s->differentiable.empty()) {
      for (const auto& t : pick(s->outputs, s->differentiable)) s->grad_outputs.push_back(torch::empty_like(t));
      // The backward graph shares the forward graph's memory pool (they replay in that order).
      s->backward.capture_begin(s->forward.pool(), cudaStreamCaptureModeThreadLocal);
      s->grad_params = torch::autograd::grad(pick(s->outputs, s->differentiable), params_, s->grad_outputs,
                                             /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
      s->backward.capture_end();
    }
  } catch (const std::exception& e) {
    at::autocast::set_autocast_cache_enabled(cache);
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    fail("train.cuda_graph: capturing the step failed: {}. A CUDA graph needs fixed shapes and no host "
         "synchronisation inside the model (item(), nonzero(), boolean indexing); set train.cuda_graph: false",
         torch_error ? torch_error->what_without_backtrace() : e.what());
  }
  at::autocast::set_autocast_cache_enabled(cache);
  after.record(side);
  after.block(current);
  state_ = std::move(s);
}

std::optional<TensorDict> GraphedFunction::operator()(const TensorDict& inputs) {
  if (!state_) capture(inputs);
  else if (!matches(inputs)) return std::nullopt;
  {
    const torch::NoGradGuard no_grad;
    for (const auto& [name, t] : inputs) state_->inputs[name].copy_(t, /*non_blocking=*/true);
  }
  state_->forward.replay();
  ++replays_;
  const bool grad = torch::GradMode::is_enabled() && !state_->differentiable.empty();
  std::shared_ptr<GraphedBackward> node;
  if (grad) {
    node = std::make_shared<GraphedBackward>(state_, params_);
    node->set_next_edges(torch::autograd::collect_next_edges(params_));
  }
  TensorDict out;
  for (const auto& [name, t] : state_->outputs) out[name] = t.defined() ? t.detach() : t;
  if (grad)  // the node's inputs in the order of grad_outputs
    for (const auto& name : state_->differentiable) torch::autograd::set_history(out[name], node);
  return out;
}

}  // namespace facet::train
