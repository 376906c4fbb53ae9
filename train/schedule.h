// Learning-rate schedules as pure functions of the optimiser step, so resuming needs only the step.
// Each group's lr = base lr × warm-up factor × schedule factor.
//
//   schedule:
//     name: cosine          # constant | cosine | multistep | step | poly
//     warmup_steps: 500     # linear warm-up from warmup_factor × lr (any schedule);
//                           # or warmup_epochs: 5 (fractional epochs allowed)
//     warmup_factor: 0.001
//     min_factor: 0.0       # cosine: floor as a fraction of the base lr
//     milestones: [..]      # multistep: steps, or milestone_epochs: [..]
//     step_epochs: 2        # step: multiply by gamma every 2 epochs (or step_size: N steps)
#pragma once

#include "core/registry.h"

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace facet::train {

class Schedule {
 public:
  virtual ~Schedule() = default;
  // Multiplier of the base learning rate at `step` (0-based) of `total_steps`.
  virtual double factor(int64_t step) const = 0;
};

// How long the run is, for schedules written in steps or in epochs (of optimiser steps).
struct ScheduleSpan {
  int64_t total_steps = 0;
  int64_t steps_per_epoch = 0;  // 0: unknown (epoch-based keys are then errors)
};

using ScheduleRegistry = Registry<std::shared_ptr<Schedule>, const ScheduleSpan&>;
ScheduleRegistry& schedule_registry();

// Sets every group's lr to base_lrs[i] × schedule.factor(step).
void apply_learning_rates(torch::optim::Optimizer& optimizer, const std::vector<double>& base_lrs,
                          const Schedule& schedule, int64_t step);

}  // namespace facet::train
