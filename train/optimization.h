// One optimiser with everything that steps with it: its parameter groups, learning-rate schedule,
// fp16 gradient scaler and data-parallel gradient reducer. A training step owns the order of
// forward and backward; an Optimization owns what happens to the gradients:
//
//   opt.zero_grad();
//   for each micro-batch: opt.backward(loss, last);      // ÷ accumulation, × fp16 scale, all-reduce on the last
//   const StepVerdict v = opt.step(step, loss_finite);    // unscale, clip, non-finite guard, lr, step
//
// The verdict is decided from values every rank agrees on (all-reduced gradients, and the loss
// flags reduced over ranks), with one host synchronisation per step.
#pragma once

#include "core/config.h"
#include "train/amp.h"
#include "train/distributed.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/schedule.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::train {

struct StepVerdict {
  bool applied = false;
  bool non_finite = false;  // a loss or gradient was NaN/inf on some rank (not an fp16 overflow)
  bool overflow = false;    // fp16: the scaler found inf gradients and backs off
  bool loss_non_finite = false;
  double grad_norm = 0;     // before clipping (0 when the norm was not needed)
  double loss = 0;          // the value passed as `loss_sum` divided by the micro-batch count
};

struct OptimizationSettings {
  std::optional<torch::ScalarType> amp;
  int64_t grad_accum = 1;
  double clip_norm = 0;
  bool overlap_grad_reduce = true;
  int64_t bucket_bytes = 25 << 20;
};

class Optimization {
 public:
  // `optim` is the optimiser's config node (lr, groups, freeze, params, ...), `schedule` its
  // schedule node (may be absent: constant). `group` may be null (one rank).
  Optimization(std::string name, const Config& optim, const Config* schedule, torch::nn::Module& model,
               const ScheduleSpan& span, const OptimizationSettings& settings, torch::Device device,
               ProcessGroup* group);
  ~Optimization();

  const std::string& name() const { return name_; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  GradScaler* scaler() { return scaler_.get(); }
  // The first group's current learning rate, for logs.
  double lr() const;

  // Gradients set to none (not zero-filled), as PyTorch's default.
  void zero_grad();
  // Backward of one micro-batch's loss. Only the last micro-batch's backward all-reduces.
  void backward(const torch::Tensor& loss, bool last_micro_batch);
  // After the last micro-batch of step `step` (0-based): `loss_sum` is the sum of the micro-batch
  // losses (a device scalar, detached), `micro_batches` their number. Unless a value is non-finite
  // (on any rank), sets the scheduled learning rates and steps. Gradients stay until zero_grad().
  StepVerdict step(int64_t step, const torch::Tensor& loss_sum, int64_t micro_batches);
  // Names of the parameters whose gradient holds NaN/inf, for a diagnosis.
  std::vector<std::string> non_finite_gradients() const;

 private:
  std::string name_;
  OptimizationSettings settings_;
  torch::Device device_;
  ProcessGroup* group_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> param_names_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lrs_;
  std::shared_ptr<Schedule> schedule_;
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<OverlappedGradientReducer> reducer_;
};

}  // namespace facet::train
