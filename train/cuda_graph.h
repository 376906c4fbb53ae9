// `train.cuda_graph`: the forward and the backward of a static-shape function of tensors, each
// captured once as a CUDA graph and replayed every step — what torch.cuda.make_graphed_callables
// does for a module in Python. A replay launches the whole forward (or backward) as one graph, so
// a step of many small kernels stops paying a launch and a dispatch for each.
//
// What stays eager around it: the loss, the optimiser, gradient clipping, the non-finite guard,
// the fp16 scaler, the data-parallel all-reduce (the backward graph's gradients reach the
// parameters through their ordinary accumulation, so the reducer's hooks fire as usual) and the
// hooks. So everything the trainer does keeps working; what the graph needs is:
//   - the same input shapes and dtypes every call: a call with other shapes returns nullopt and
//     the caller runs the function eagerly (the last, smaller batch of an epoch when drop_last is off);
//   - no host synchronisation and no data-dependent shapes inside the function (item(), nonzero(),
//     boolean masks): capturing such a function fails, and the error names train.cuda_graph;
//   - outputs read before the next call: they live in the graph's memory and the next replay
//     overwrites them (as in PyTorch).
// Warm-up runs (3, as PyTorch's docs advise) happen on a side stream before capture; the module's
// buffers (BatchNorm statistics) and the CUDA random state are restored after them, so capture
// leaves no trace in the model and the first replay draws what the eager step would.
// Random ops (dropout) draw from the CUDA generator's state at each replay: the per-micro-batch
// reseeding of the trainer (exact resume) holds with graphs too.
#pragma once

#include "core/tensor_dict.h"

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace facet::train {

class GraphedFunction {
 public:
  using Function = std::function<TensorDict(const TensorDict& inputs)>;

  // `params`: the tensors whose gradients the backward graph computes (those requiring grad are
  // kept); `module`: whose buffers the warm-up must not change (may be null).
  GraphedFunction(Function function, std::vector<torch::Tensor> params, torch::nn::Module* module, int warmup = 3);
  ~GraphedFunction();
  GraphedFunction(const GraphedFunction&) = delete;
  GraphedFunction& operator=(const GraphedFunction&) = delete;

  // function(inputs) through the graphs, captured on the first call. Floating outputs carry the
  // graphed backward. nullopt when the inputs' names, shapes or dtypes are not the captured ones.
  // Inputs must be on a CUDA device.
  std::optional<TensorDict> operator()(const TensorDict& inputs);

  bool captured() const;
  int64_t replays() const { return replays_; }

  struct State;  // the graphs and their static tensors (CUDA types, in the .cpp)

 private:
  void capture(const TensorDict& inputs);
  bool matches(const TensorDict& inputs) const;

  Function function_;
  std::vector<torch::Tensor> params_;
  torch::nn::Module* module_;
  int warmup_;
  int64_t replays_ = 0;
  std::shared_ptr<State> state_;
};

}  // namespace facet::train
