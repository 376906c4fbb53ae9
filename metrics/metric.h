// Metric: update over batches, compute at the end, reset. Its state is a vector of sufficient
// statistics that sum across ranks, so a distributed evaluation merges with one all-reduce.
#pragma once

#include "core/registry.h"
#include "core/tensor_dict.h"
#include "data/dataset.h"

#include <map>
#include <string>

namespace facet::metrics {

class Metric {
 public:
  virtual ~Metric() = default;
  virtual void update(const TensorDict& outputs, const data::Batch& batch) = 0;
  // Named values, e.g. {"accuracy": 0.93} or {"f1/AU1": ..., "f1/mean": ...}.
  virtual std::map<std::string, double> compute() const = 0;
  virtual void reset() = 0;
  // Called before each evaluation with the split being evaluated (label names for the table).
  virtual void prepare(const data::Dataset& eval) {}
  // Summable statistics (float64 CPU tensor) and their replacement by the sum over ranks.
  virtual torch::Tensor state() const = 0;
  virtual void load_state(const torch::Tensor& summed) = 0;
};

using MetricRegistry = Registry<std::shared_ptr<Metric>>;
MetricRegistry& metric_registry();

}  // namespace facet::metrics
