// Evaluation of a model on one split: the split's loader with the evaluation transforms, the
// metrics merged over ranks (summed statistics all-reduced, per-sample records gathered), per-sample
// predictions and the task's pictures. It needs neither the training split nor an optimiser, so the
// trainer, `facet eval` and `facet predict` share it.
#pragma once

#include "core/config.h"
#include "data/dataset.h"
#include "data/transform.h"
#include "metrics/metric.h"
#include "models/model.h"
#include "train/options.h"
#include "train/runtime.h"
#include "train/visualize.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace facet::train {

struct EvalOutput {
  std::map<std::string, double> metrics;              // "<split>/<name>" → value
  std::vector<std::pair<std::string, Png>> pictures;  // "<split>/<tag>" → picture (rank 0, log_images > 0)
};

class Evaluator {
 public:
  // Opens `split` of the config's data, with its metrics, evaluation transforms and visualiser.
  Evaluator(const Config& config, std::string split, const Runtime& runtime, const TrainOptions& options,
            const models::Model& model);

  // Evaluates `model` as it is (the caller sets eval mode and swaps EMA weights). With a
  // `predictions` stem, rank 0 writes <stem>.jsonl (and <stem>.csv when every output is one
  // fixed-size tensor per sample) for every sample of every rank.
  EvalOutput run(models::Model& model, const std::filesystem::path& predictions = {});

  // The names run() reports, from every metric computed over no sample, so that a config reading a
  // result by a wrong name fails before training; nullopt when a metric cannot compute without
  // samples.
  std::optional<std::vector<std::string>> result_names();

  const std::string& split() const { return split_; }
  const data::Dataset& dataset() const { return *dataset_; }

 private:
  std::string split_;
  const Runtime& runtime_;
  std::optional<torch::ScalarType> amp_;
  bool channels_last_ = false;
  bool prefetch_ = true;
  int64_t batch_size_ = 1, log_images_ = 0;
  int workers_ = 2;
  std::shared_ptr<data::Dataset> dataset_;
  std::vector<std::shared_ptr<data::Transform>> transforms_;
  std::vector<std::shared_ptr<metrics::Metric>> metrics_;
  std::shared_ptr<Visualizer> visualizer_;
};

}  // namespace facet::train
