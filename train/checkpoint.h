// Checkpoints that survive crashes: each one is a directory written under a temporary name, every
// file fsync'd, then renamed into place; `last` and `best` are symlinks replaced atomically. A kill
// at any moment leaves the previous `last` intact. Only the newest `keep_last` are kept (and `best`).
//
//   checkpoints/step_00001200/  model.safetensors  optimizer.pt  rng.safetensors  state.json  [ema.safetensors]
//   checkpoints/last -> step_00001200      checkpoints/best -> step_00001000
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace facet::train {

struct CheckpointContents {
  std::map<std::string, torch::Tensor> model;     // state dict (parameters and buffers)
  std::map<std::string, torch::Tensor> ema;       // empty when EMA is off
  std::map<std::string, torch::Tensor> extra;     // RNG states, grad-scaler state, ...
  nlohmann::json state;                           // step, epoch, sampler, best metric, ...
};

class CheckpointDir {
 public:
  explicit CheckpointDir(std::filesystem::path dir, int keep_last = 2) : dir_(std::move(dir)), keep_last_(keep_last) {}

  // Writes step_<step>/ atomically (optimizer saved through torch::serialize), points `last` at it,
  // and `best` too when `is_best`; then prunes old ones.
  std::filesystem::path save(int64_t step, const CheckpointContents& contents, torch::optim::Optimizer& optimizer,
                             bool is_best);
  // The directory `last` (or `best`) points at, if any.
  std::optional<std::filesystem::path> resolve(const std::string& link = "last") const;
  // Reads a checkpoint directory; fails naming the file that is missing or corrupt.
  static CheckpointContents load(const std::filesystem::path& checkpoint);
  // Restores the optimiser's state onto `device` (its parameters must be the ones it was saved with).
  static void load_optimizer(const std::filesystem::path& checkpoint, torch::optim::Optimizer& optimizer,
                             const torch::Device& device);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  void point(const std::string& link, const std::filesystem::path& target) const;
  void prune() const;

  std::filesystem::path dir_;
  int keep_last_;
};

}  // namespace facet::train
