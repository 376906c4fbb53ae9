// Hooks: code that watches training and acts on it, with the trainer in reach (detectron2's
// HookBase, mmengine's hooks). The trainer calls every hook at fixed points, in ascending
// priority() (ties: the order they were added):
//
//   before_train
//   per step:   before_micro_batch / after_micro_batch (each micro-batch, every phase), after_step
//   per epoch:  after_epoch
//   around evaluation: before_eval, after_eval
//   at a checkpoint: on_save (add state to it); when resuming: on_restore (read it back)
//   after_train
//
// Built-in hooks (train/hooks/) log, keep an EMA of the weights, evaluate, checkpoint and feed
// per-sample losses back to curriculum samplers; configs add more by name:
//
//   hooks:
//     - {name: early_stopping, metric: val/accuracy, mode: max, patience: 3}
#pragma once

#include "core/registry.h"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace facet::data {
struct Batch;
}

namespace facet::train {

class Trainer;
struct MicroBatch;
struct StepResult;
struct CheckpointContents;

// Evaluation results as hooks see them: "<split>/<metric>" → value.
using EvalResults = std::map<std::string, double>;

// Priorities of the built-in hooks; configured hooks default to 50.
namespace hook_priority {
inline constexpr int logging = 10;      // the step's line and scalars come before any evaluation output
inline constexpr int ema = 20;          // EMA weights updated before they are evaluated
inline constexpr int curriculum = 25;   // the sampler learns from the step before anything else reads it
inline constexpr int evaluation = 30;
inline constexpr int configured = 50;   // early stopping and other hooks from the config
inline constexpr int checkpoint = 90;   // last: saves what the others decided (best, stop)
}  // namespace hook_priority

class Hook {
 public:
  virtual ~Hook() = default;
  // Unique within a run (the key of the hook's saved state).
  virtual std::string name() const = 0;
  virtual int priority() const { return hook_priority::configured; }
  // Whether the hook reads StepResult::indices / per_sample (they are then gathered over ranks).
  virtual bool wants_per_sample() const { return false; }
  // The evaluation results the hook reads, each with where the config names it ("file:line:
  // hooks[0].metric"): checked against what the evaluation reports before training starts.
  virtual std::vector<std::pair<std::string, std::string>> metrics_read() const { return {}; }

  virtual void before_train(Trainer& trainer) {}
  virtual void before_micro_batch(Trainer& trainer, const data::Batch& batch, int64_t index) {}
  virtual void after_micro_batch(Trainer& trainer, const MicroBatch& micro) {}
  virtual void after_step(Trainer& trainer, const StepResult& result) {}
  virtual void after_epoch(Trainer& trainer) {}
  virtual void before_eval(Trainer& trainer) {}
  virtual void after_eval(Trainer& trainer, const EvalResults& results) {}
  virtual void after_train(Trainer& trainer) {}
  // Saves what the hook has counted (into contents.state["hooks"][name()], or tensors into
  // contents.files), so that a resumed run continues it; on_restore reads it back.
  virtual void on_save(Trainer& trainer, CheckpointContents& contents) {}
  virtual void on_restore(Trainer& trainer, const CheckpointContents& contents) {}
};

// Configured hooks, built from the `hooks` list.
using HookRegistry = Registry<std::shared_ptr<Hook>>;
HookRegistry& hook_registry();

}  // namespace facet::train
