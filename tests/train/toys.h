// Small components registered by the train tests (tests/train/test_toys.cpp) to drive the trainer
// through every step kind, hook point and sampler path in seconds: a recording sampler that adapts
// its order to feedback, a recording hook, a dataset that fails on chosen samples with chosen
// exceptions, a GAN, a denoiser with a frozen encoder, a model that computes its own losses and
// returns ragged boxes and text, a metric kept as per-sample records, a metric whose values are
// scripted per evaluation, and a dataset that notes which splits were opened.
#pragma once

#include "core/config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace facet::train::toys {

// What the recording sampler and hook saw, in the order they saw it (this process).
struct Recording {
  std::mutex mutex;
  std::vector<nlohmann::json> feedback;  // {"indices": [...], "losses": [...]} per step
  std::vector<std::string> events;       // "before_train", "micro 0", "step 3", "eval", ...
  std::vector<std::vector<int64_t>> orders;  // every epoch_order the sampler handed out
  std::set<std::string> opened_splits;   // split_probe datasets opened
  void clear();
};
Recording& recording();

// Writes the recording as JSON to `path` (forked ranks report through files).
void save_recording(const std::filesystem::path& path);

// The demo experiment (experiments/demo/shapes.yaml) with `overrides`, small and fast.
Config shapes_experiment(const std::vector<std::string>& overrides = {});

}  // namespace facet::train::toys
