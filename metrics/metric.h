// Metric: update over batches, compute at the end, reset. Most metrics keep a vector of sufficient
// statistics that sum across ranks, so a distributed evaluation merges with one all-reduce. Metrics
// that are not sums (AUC, FROC, metrics parsed from generated text) keep per-sample records instead:
// each rank serialises its own, every rank receives all of them, and the metric merges them.
#pragma once

#include "core/registry.h"
#include "core/outputs.h"
#include "data/dataset.h"

#include <map>
#include <string>

namespace facet::metrics {

class Metric {
 public:
  virtual ~Metric() = default;
  virtual void update(const Outputs& outputs, const data::Batch& batch) = 0;
  // Named values, e.g. {"accuracy": 0.93} or {"f1/AU1": ..., "f1/mean": ...}.
  virtual std::map<std::string, double> compute() const = 0;
  virtual void reset() = 0;
  // Called before each evaluation with the split being evaluated (label names for the table).
  virtual void prepare(const data::Dataset& eval) {}
  // Summable statistics (float64 CPU tensor) and their replacement by the sum over ranks.
  virtual torch::Tensor state() const = 0;
  virtual void load_state(const torch::Tensor& summed) = 0;
  // Per-sample records in the metric's own serialisation ("" when it keeps none), and their
  // replacement by every rank's records, in rank order (this rank's own among them).
  virtual std::string records() const { return {}; }
  virtual void merge_records(const std::vector<std::string>& per_rank) {}
};

using MetricRegistry = Registry<std::shared_ptr<Metric>>;
MetricRegistry& metric_registry();

}  // namespace facet::metrics
