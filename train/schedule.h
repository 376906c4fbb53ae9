// Learning-rate schedules as pure functions of the optimiser step, so resuming needs only the step.
// Each group's lr = base lr × warm-up factor × schedule factor.
//
//   schedule:
//     name: cosine          # constant | cosine | multistep | poly
//     warmup_steps: 500     # linear warm-up from warmup_factor × lr (any schedule)
//     warmup_factor: 0.001
//     min_factor: 0.0       # cosine: floor as a fraction of the base lr
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

using ScheduleRegistry = Registry<std::shared_ptr<Schedule>, int64_t /*total steps*/>;
ScheduleRegistry& schedule_registry();

// Sets every group's lr to base_lrs[i] × schedule.factor(step).
void apply_learning_rates(torch::optim::Optimizer& optimizer, const std::vector<double>& base_lrs,
                          const Schedule& schedule, int64_t step);

}  // namespace facet::train
