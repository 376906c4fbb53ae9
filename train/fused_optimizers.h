// SGD, Adam and AdamW stepping all parameters of a group in one fused ATen kernel
// (`_fused_sgd_`, `_fused_adam_`, `_fused_adamw_`, on CPU and CUDA) instead of LibTorch's loop of
// three to six elementwise ops per parameter: one pass over each parameter, gradient and state
// tensor per step instead of several. The state is LibTorch's own (SGDParamState, AdamParamState,
// AdamWParamState), so checkpoints written with either implementation load into the other, and
// `optim.fused: false` switches back to the loop (the numbers agree to float rounding).
//
// Parameters are grouped by device and dtype as the kernels need; sparse gradients are refused, as
// PyTorch's fused optimisers refuse them.
#pragma once

#include <torch/torch.h>

namespace facet::train {

class FusedSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace facet::train
