// Training steps: what one optimiser step does with the micro-batches of one global batch. The
// kind is chosen by config (`step: {name: ...}`, default `supervised`):
//
//   supervised     outputs = model(batch); losses = loss(outputs, batch)          (classifiers, AU models)
//   model_losses   the model returns its own losses (models::ComputesLosses)       (two-stage detectors)
//   alternating    phases in a configured order, one optimiser each               (generator / discriminator)
//                  (models::PhasedObjective)
//   diffusion      draws timesteps and noise per batch, frozen encoders            (latent diffusion)
//                  (models::Denoiser)
//
// Every kind runs through run_objective, so gradient accumulation, AMP (an fp16 scaler per
// optimiser), clipping, the non-finite guard, the overlapped all-reduce, the per-micro-batch random
// streams (exact resume) and the hooks behave the same whatever the step.
#pragma once

#include "core/outputs.h"
#include "core/registry.h"
#include "data/dataset.h"
#include "losses/loss.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace facet::train {

class Trainer;
class Optimization;

// One micro-batch as the hooks see it, between its backward and the next micro-batch.
struct MicroBatch {
  const data::Batch& batch;
  const Outputs& outputs;
  const losses::LossResult& losses;
  int64_t index = 0;        // 0 .. grad_accum - 1
  std::string phase;        // alternating steps: the phase; else empty
};

// What one optimiser step produced.
struct StepResult {
  bool applied = false;                          // false: skipped (non-finite values, fp16 overflow)
  std::string skipped;                           // why, when not applied
  bool non_finite = false;                       // skipped for non-finite values (counted in skipped_steps)
  double loss = 0;                               // mean over the micro-batches, this rank
  std::map<std::string, torch::Tensor> parts;    // device scalars: each loss part's mean over the micro-batches
  double grad_norm = 0;                          // of the (last) optimiser's gradients, before clipping
  // Dataset indices and per-sample losses of the step, this rank's micro-batches in order; after the
  // trainer gathers them (when a sampler or hook asks), every rank's, in rank order.
  torch::Tensor indices, per_sample;
};

class TrainStep {
 public:
  virtual ~TrainStep() = default;
  // The optimisers the step uses (names of the `optimizers` map; "main" for the `optim` node).
  virtual std::vector<std::string> optimizers() const { return {"main"}; }
  // Whether the step needs the config's `loss`.
  virtual bool uses_loss() const { return false; }
  virtual StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) = 0;
};

// Built from the `step` node with the model the step will train (checked for the capability the
// step needs).
using StepRegistry = Registry<std::shared_ptr<TrainStep>, torch::nn::Module&>;
StepRegistry& step_registry();

// A micro-batch's forward + loss, inside autocast: fills `outputs`, returns the losses.
using Objective = std::function<losses::LossResult(const data::Batch& batch, Outputs& outputs)>;

// Zeroes `optimization`'s gradients, runs `objective` and backward on every micro-batch (hooks
// around each), then steps the optimiser. `phase` names the phase in hooks and errors (may be empty).
StepResult run_objective(Trainer& trainer, std::vector<data::Batch>& micro_batches, Optimization& optimization,
                         const Objective& objective, const std::string& phase = {}, uint64_t phase_index = 0);

}  // namespace facet::train
