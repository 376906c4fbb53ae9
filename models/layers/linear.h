// models::Linear: y = x W^T + b with torch::nn::Linear's parameter names (`weight` [out, in], `bias`
// [out]) and, outside a ConstructionScope, its exact initialisation (kaiming_uniform_ a = sqrt(5),
// bias U(-1/sqrt(in), 1/sqrt(in)), drawn in the same order), so swapping it in changes no checkpoint
// and no seeded run. What it adds:
//   - it honours models::ConstructionScope (construction.h): allocated in the scope's dtype and
//     device, and left uninitialised (no kaiming pass over billions of weights) when deferring;
//   - adapters (LoRA, ...) attach to it after construction (adapters/adapter.h): their parameters are
//     registered on the Linear itself, so they are named `<path>.lora_A.weight` as PEFT names them.
#pragma once

#include "models/layers/construction.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::models {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features) : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
};

class LinearImpl;

// Changes a Linear's output after construction. Implementations register their parameters on the
// host Linear (so they are named under its path) and keep a pointer to it for merging.
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  virtual std::string kind() const = 0;  // "lora"
  // `y` is the host's output for `x` (its weight and bias, merged adapters included).
  virtual torch::Tensor forward(const torch::Tensor& x, torch::Tensor y, bool training) = 0;
  // Folds the adapter into the host's weight (inference without the extra path), and back.
  virtual void merge() = 0;
  virtual void unmerge() = 0;
  virtual bool merged() const = 0;
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features) : LinearImpl(LinearOptions(in_features, out_features)) {}
  explicit LinearImpl(const LinearOptions& options);

  torch::Tensor forward(const torch::Tensor& x);
  // torch::nn::Linear's initialisation, in place.
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;

  void add_adapter(std::shared_ptr<LinearAdapter> adapter) { adapters_.push_back(std::move(adapter)); }
  const std::vector<std::shared_ptr<LinearAdapter>>& adapters() const { return adapters_; }

  LinearOptions options;
  torch::Tensor weight, bias;  // bias undefined without one

 private:
  std::vector<std::shared_ptr<LinearAdapter>> adapters_;
};
TORCH_MODULE(Linear);

}  // namespace facet::models
