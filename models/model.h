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

// Models whose parameters sit at depths, for layer-wise learning-rate decay (BEiT / MAE fine-tuning,
// EMMA, Masked CoTEX): with optim.layer_decay: d, a parameter at layer id k of L ids trains at
// lr * d^(L - 1 - k), so the embeddings learn slowest and the head at the full rate.
class LayerDepths {
 public:
  virtual ~LayerDepths() = default;
  virtual int64_t num_layer_ids() const = 0;
  // In 0 .. num_layer_ids() - 1 for every parameter name of the model.
  virtual int64_t layer_id(const std::string& parameter_name) const = 0;
};

using ModelRegistry = Registry<std::shared_ptr<Model>>;
ModelRegistry& model_registry();

}  // namespace facet::models
