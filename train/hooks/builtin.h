// The hooks every run gets from its `train` options (the trainer adds them; configs add others by
// name through the hook registry).
#pragma once

#include "train/hook.h"
#include "train/options.h"

#include <memory>

namespace facet::train {

// The progress line, and the training scalars (loss, its parts, learning rates, gradient norm)
// every train.log_every steps to TensorBoard and metrics.csv, averaged over ranks.
std::shared_ptr<Hook> make_logging_hook(const TrainOptions& options);
// An exponential moving average of the trainable weights and the buffers (train.ema_decay), swapped
// in for evaluation and saved as ema.safetensors.
std::shared_ptr<Hook> make_ema_hook(double decay);
// Evaluation every train.eval_every steps (0: every epoch) and at the end.
std::shared_ptr<Hook> make_evaluation_hook(const TrainOptions& options);
// Checkpoints every train.checkpoint_every steps (0: at every evaluation), at a new best of
// train.best_metric, and at the end.
std::shared_ptr<Hook> make_checkpoint_hook(const TrainOptions& options);
// The step's per-sample losses, gathered over ranks, to Sampler::feedback (curriculum samplers).
std::shared_ptr<Hook> make_curriculum_hook();

}  // namespace facet::train
