// Loss: compares a model's outputs with a batch. It returns the scalar to minimise, its named parts
// (logged separately and named in non-finite diagnoses) and, when it can, the per-sample losses
// that curriculum samplers feed on.
#pragma once

#include "core/registry.h"
#include "core/outputs.h"
#include "data/dataset.h"

namespace facet::losses {

struct LossResult {
  torch::Tensor total;        // scalar
  TensorDict parts;           // scalar each, e.g. {"bce": ..., "dice": ...}
  torch::Tensor per_sample;   // [B], or undefined
};

class Loss {
 public:
  virtual ~Loss() = default;
  virtual LossResult operator()(const Outputs& outputs, const data::Batch& batch) = 0;
  // Called once with the training split before training, for what a loss derives from the data
  // (class-imbalance weights computed from the training labels).
  virtual void prepare(const data::Dataset& train) {}
};

using LossRegistry = Registry<std::shared_ptr<Loss>>;
LossRegistry& loss_registry();

}  // namespace facet::losses
