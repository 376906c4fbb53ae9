// Model: a torch::nn::Module that maps a Batch to named outputs. Every model family registers here
// and is built from the config's `model` node, like torch::nn modules are built from Options.
#pragma once

#include "core/registry.h"
#include "core/tensor_dict.h"
#include "data/dataset.h"

#include <torch/torch.h>

namespace facet::models {

class Model : public torch::nn::Module {
 public:
  virtual TensorDict forward(const data::Batch& batch) = 0;
};

using ModelRegistry = Registry<std::shared_ptr<Model>>;
ModelRegistry& model_registry();

}  // namespace facet::models
