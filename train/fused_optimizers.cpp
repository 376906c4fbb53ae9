#include "train/fused_optimizers.h"

#include "core/error.h"

#include <map>
#include <tuple>

namespace facet::train {

namespace {

// The lists one fused call takes, for the parameters that share a device, a dtype and (for SGD)
// whether their momentum buffer is new or (for Adam) their step count.
struct Lists {
  std::vector<torch::Tensor> params, grads, first, second, max;
};
using Key = std::tuple<int, int, int, int64_t>;

Key key_of(const torch::Tensor& p, int64_t extra) {
  return {static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type()), extra};
}

torch::Tensor run_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (!closure) return {};
  torch::AutoGradMode enable(true);
  return closure();
}

const torch::Tensor& checked_grad(const torch::Tensor& p, const char* optimizer) {
  const torch::Tensor& g = p.grad();
  if (g.is_sparse()) fail("{} (fused): sparse gradients are not supported; set optim.fused: false", optimizer);
  if (g.scalar_type() != p.scalar_type())
    fail("{} (fused): a {} gradient for a {} parameter; set optim.fused: false", optimizer, c10::toString(g.scalar_type()),
         c10::toString(p.scalar_type()));
  return g;
}

using StateMap = ska::flat_hash_map<void*, std::unique_ptr<torch::optim::OptimizerParamState>>;

// Adam and AdamW differ only in the kernel (where weight decay enters).
template <class Options, class State, class Kernel>
void adam_step(torch::optim::Optimizer& optimizer, StateMap& state, const char* name, Kernel kernel) {
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const Options&>(group.options());
    std::map<Key, Lists> lists;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& g = checked_grad(p, name);
      auto& slot = state[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<State>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) s->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<State&>(*slot);
      s.step(s.step() + 1);
      Lists& l = lists[key_of(p, s.step())];
      l.params.push_back(p);
      l.grads.push_back(g);
      l.first.push_back(s.exp_avg());
      l.second.push_back(s.exp_avg_sq());
      if (o.amsgrad()) l.max.push_back(s.max_exp_avg_sq());
    }
    for (auto& [key, l] : lists) {
      // The kernel reads the (already incremented) step from a float tensor beside the parameters.
      const torch::Tensor step = torch::full({}, static_cast<double>(std::get<3>(key)),
                                             l.params.front().options().dtype(torch::kFloat));
      const std::vector<torch::Tensor> steps(l.params.size(), step);
      kernel(l.params, l.grads, l.first, l.second, l.max, steps, o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()),
             o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
    }
  }
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = run_closure(closure);
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    // extra = 1: the buffer is new (the kernel starts it from the gradient, as the loop does).
    std::map<Key, Lists> lists;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& g = checked_grad(p, "SGD");
      bool first = false;
      torch::Tensor buffer;
      if (o.momentum() != 0) {
        auto& slot = state_[p.unsafeGetTensorImpl()];
        if (!slot) {
          auto s = std::make_unique<torch::optim::SGDParamState>();
          s->momentum_buffer(torch::empty_like(p, torch::MemoryFormat::Preserve));
          slot = std::move(s);
          first = true;
        }
        buffer = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
      }
      Lists& l = lists[key_of(p, first)];
      l.params.push_back(p);
      l.grads.push_back(g);
      if (buffer.defined()) l.first.push_back(buffer);
    }
    for (auto& [key, l] : lists)
      torch::_fused_sgd_(l.params, l.grads, l.first, o.weight_decay(), o.momentum(), o.lr(), o.dampening(), o.nesterov(),
                         /*maximize=*/false, /*is_first_step=*/std::get<3>(key) == 1);
  }
  return loss;
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = run_closure(closure);
  adam_step<torch::optim::AdamOptions, torch::optim::AdamParamState>(
      *this, state_, "Adam", [](auto&&... args) { torch::_fused_adam_(args...); });
  return loss;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = run_closure(closure);
  adam_step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(
      *this, state_, "AdamW", [](auto&&... args) { torch::_fused_adamw_(args...); });
  return loss;
}

}  // namespace facet::train
