// Checkpoints that survive crashes: each one is a directory written under a temporary name, every
// file fsync'd, state.json last, then renamed into place; `last` and `best` are symlinks replaced
// atomically. A kill at any moment leaves a complete checkpoint to resume from — `last`, or when a
// kill came between the steps of a save, the newest complete one (latest_complete()). Only the
// newest `keep_last` are kept (and `best`).
//
//   checkpoints/step_00001200/  model.safetensors  optimizer.pt  trainer.safetensors  state.json  [ema.safetensors ...]
//   checkpoints/last -> step_00001200      checkpoints/best -> step_00001000
//
// model.safetensors holds what trains: parameters and buffers, except frozen tensors that came
// from a weights file — state.json references those files by path and content hash instead.
#pragma once

#include "core/safetensors.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace facet::train {

struct CheckpointContents {
  safetensors::TensorMap model;                            // model tensors (see above)
  std::map<std::string, safetensors::TensorMap> files;     // further tensor files: "ema.safetensors", "trainer.safetensors"
  std::map<std::string, torch::optim::Optimizer*> optimizers;  // by name; saved as optimizer.pt ("main") or optimizer.<name>.pt
  nlohmann::json state = nlohmann::json::object();         // step, epoch, sampler, hooks, config, ...
  std::filesystem::path source;                            // the directory it was loaded from, for messages
};

class CheckpointDir {
 public:
  explicit CheckpointDir(std::filesystem::path dir, int keep_last = 2) : dir_(std::move(dir)), keep_last_(keep_last) {}

  // Writes step_<step>/ atomically, points `last` at it (and `best` when `is_best`), then prunes.
  std::filesystem::path save(int64_t step, const CheckpointContents& contents, bool is_best);
  // The directory `last` (or `best`) points at, if any and complete.
  std::optional<std::filesystem::path> resolve(const std::string& link = "last") const;
  // The newest complete checkpoint, whatever `last` says: what a resume continues from.
  std::optional<std::filesystem::path> latest_complete() const;
  // Points `last`, and `best` when it was saved as the best, at `checkpoint` where they point
  // elsewhere: a run killed between writing a checkpoint and linking it is resumed from it.
  void relink(const std::filesystem::path& checkpoint, bool is_best) const;
  // Reads model.safetensors, every other *.safetensors into `files`, and state.json (optimisers are
  // restored separately); fails naming the file that is missing or corrupt.
  static CheckpointContents load(const std::filesystem::path& checkpoint);
  // Restores optimiser `name` onto `device` (its parameters must be the ones it was saved with).
  static void load_optimizer(const std::filesystem::path& checkpoint, const std::string& name,
                             torch::optim::Optimizer& optimizer, const torch::Device& device);
  static bool is_complete(const std::filesystem::path& checkpoint);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  void point(const std::string& link, const std::filesystem::path& target) const;
  void prune() const;

  std::filesystem::path dir_;
  int keep_last_;
};

// Fault injection for the tests: FACET_CHECKPOINT_FAULT=<stage>[:<n>] ends the process (exit code
// 86) at `stage` of its n-th save (default the first). Stages, in protocol order: files (tensors
// written), state (state.json written), swap (the previous copy of the same step moved aside,
// before the new one is in place), link (in place, `last` not yet moved). With
// FACET_CHECKPOINT_NO_EXCHANGE=1 the save takes the path of file systems without
// renameat2(RENAME_EXCHANGE).
inline constexpr int kCheckpointFaultExitCode = 86;

}  // namespace facet::train
