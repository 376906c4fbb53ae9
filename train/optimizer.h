// Optimisers built from the config's `optim` node, with parameter groups: no weight decay on norms
// and biases, per-module learning-rate multipliers (`backbone.*: ×0.1`) and frozen modules by name
// pattern (staged training, LoRA-only training).
//
//   optim:
//     name: adamw            # sgd | adam | adamw
//     fused: true            # one ATen kernel per parameter group (false: LibTorch's loop)
//     lr: 1e-3
//     weight_decay: 0.05
//     groups: [{match: "backbone.*", lr_mult: 0.1}]
//     freeze: ["backbone.stem.*"]
//     layer_decay: 0.65      # lr x 0.65^(L-1-k) at layer id k (models with models::LayerDepths)
//     params: ["generator.*"]  # with several optimisers (`optimizers.<name>`): the parameters this one trains
#pragma once

#include "core/registry.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::train {

// One parameter group before the optimiser exists: its tensors and complete hyper-parameters.
struct GroupSpec {
  std::string label;  // for logs: "backbone.* (decay)"
  std::vector<torch::Tensor> params;
  double lr = 0;
  double weight_decay = 0;
};

using OptimizerRegistry = Registry<std::unique_ptr<torch::optim::Optimizer>, const std::vector<GroupSpec>&>;
OptimizerRegistry& optimizer_registry();

// `*` matches any run of characters (dots included); everything else literally.
bool glob_match(std::string_view pattern, std::string_view name);

// Splits the module's trainable parameters into groups following `optim.groups`, `optim.freeze` and
// `optim.no_decay` (default: every 1-D parameter, i.e. biases and norm scales). Frozen parameters get
// requires_grad(false). Patterns that match nothing are errors naming the config key.
std::vector<GroupSpec> make_param_groups(const Config& optim, torch::nn::Module& model);

std::unique_ptr<torch::optim::Optimizer> build_optimizer(const Config& optim, torch::nn::Module& model);

// The base learning rate of every group (the schedule multiplies these).
std::vector<double> base_learning_rates(const std::vector<GroupSpec>& groups);

}  // namespace facet::train
