// The builder: turns an experiment config into the components a mode needs, by name through the
// registries. Training builds everything; evaluation and prediction build the model, metrics and
// the split they read — never the training split, never an optimiser.
//
//   config → model (registry; weights: train.init_weights for a new run, else a checkpoint)
//          → datasets and loaders (data), sampler, step, loss, metrics, optimisers, schedules,
//            hooks, visualiser
#pragma once

#include "core/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "metrics/metric.h"
#include "models/model.h"
#include "core/safetensors.h"
#include "train/hook.h"
#include "train/options.h"
#include "train/runtime.h"
#include "train/visualize.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace facet::train {

// The model of `config` on `device` in train.weights_dtype, with `model.adapters` applied; randomly
// initialised, or with train.defer_init not at all: the caller then loads train.init_weights (a new
// run) or a checkpoint.
std::shared_ptr<models::Model> build_model(const Config& config, const TrainOptions& options, const torch::Device& device);

// Loads the new run's `train.init_weights` (if any), calls the model's weights_loaded(), and returns
// what each entry loaded (path, content hash, entry, tensors): checkpoints reference the frozen
// tensors by these records.
nlohmann::json load_init_weights(const Config& config, models::Model& model);

// The `metrics` list; an entry's `label: NAME` reports its values as NAME/<value>.
std::vector<std::shared_ptr<metrics::Metric>> build_metrics(const Config& config);

// The config's `visualizer` (a name or a node), else the model's default.
std::shared_ptr<Visualizer> build_visualizer(const Config& config, const models::Model& model);

// `data.sampler` over a dataset of `size`, else a random permutation per epoch.
std::shared_ptr<data::Sampler> build_sampler(const Config& data, int64_t size, uint64_t seed);

// The training loader's options from the `data` node.
data::LoaderOptions train_loader_options(const Config& data, const Runtime& runtime);

// The configured hooks (`hooks` list), in config order.
std::vector<std::shared_ptr<Hook>> build_configured_hooks(const Config& config);

// --- weights of a finished or running run -------------------------------------------------------

// A run directory or a checkpoint directory as `facet eval` / `facet predict` take it.
struct CheckpointTarget {
  std::filesystem::path run_dir;     // empty when the checkpoint is not inside a run directory
  std::filesystem::path checkpoint;
};
// `target` is a run directory (its checkpoints/<which>, else the newest complete checkpoint) or a
// checkpoint directory (model.safetensors + state.json).
CheckpointTarget resolve_checkpoint(const std::filesystem::path& target, const std::string& which = "best");

// Loads a checkpoint's weights into `model`: first the frozen weights files it references
// (state.json "frozen_weights", each checked against its content hash), then the tensors it holds
// and, with `prefer_ema` and an ema.safetensors beside them, the EMA weights over those. Every model
// tensor must be covered by one or the other.
void load_checkpoint_weights(models::Model& model, const std::filesystem::path& checkpoint, bool prefer_ema,
                             const torch::Device& device);
// The same from contents already read (a resume), without EMA.
void load_checkpoint_model(models::Model& model, const safetensors::TensorMap& tensors, const nlohmann::json& state,
                           const std::filesystem::path& checkpoint);

// The label names a checkpoint's run trained with (state.json), for prediction without a dataset.
std::vector<std::string> checkpoint_label_names(const std::filesystem::path& checkpoint);

}  // namespace facet::train
