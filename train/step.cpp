#include "train/step.h"

#include "core/log.h"
#include "core/text.h"
#include "train/amp.h"
#include "train/optimization.h"
#include "train/trainer.h"

namespace facet::train {

StepRegistry& step_registry() {
  static StepRegistry registry("training step", "steps");
  return registry;
}

namespace {

// Names of the non-finite entries of `values` (device scalars), for a diagnosis.
std::vector<std::string> non_finite_names(const std::map<std::string, torch::Tensor>& values) {
  std::vector<std::string> bad;
  for (const auto& [name, v] : values)
    if (!std::isfinite(v.item<double>())) bad.push_back(name);
  return bad;
}

}  // namespace

StepResult run_objective(Trainer& trainer, std::vector<data::Batch>& micro_batches, Optimization& optimization,
                         const Objective& objective, const std::string& phase, uint64_t phase_index) {
  const TrainOptions& o = trainer.options();
  const bool per_sample = trainer.wants_per_sample();
  const auto n = static_cast<int64_t>(micro_batches.size());
  optimization.zero_grad();
  torch::Tensor loss_sum;
  std::map<std::string, torch::Tensor> part_sums;
  std::vector<torch::Tensor> indices, sample_losses;
  for (int64_t i = 0; i < n; ++i) {
    const data::Batch& batch = micro_batches[static_cast<size_t>(i)];
    trainer.begin_micro_batch(batch, i, phase_index);
    Outputs outputs;
    losses::LossResult r;
    {
      AutocastGuard autocast(trainer.runtime().device, o.amp);
      r = objective(batch, outputs);
    }
    if (!r.total.defined() || r.total.numel() != 1)
      fail("step {}{}: the loss is not a scalar", trainer.state().step + 1, phase.empty() ? "" : " (" + phase + ")");
    optimization.backward(r.total, i + 1 == n);
    const torch::Tensor total = r.total.detach().to(torch::kFloat).reshape({});
    loss_sum = loss_sum.defined() ? loss_sum + total : total;
    for (const auto& [name, part] : r.parts) {
      const torch::Tensor p = part.detach().to(torch::kFloat).reshape({});
      auto it = part_sums.find(name);
      if (it == part_sums.end()) part_sums.emplace(name, p);
      else it->second = it->second + p;
    }
    if (per_sample) {
      if (!r.per_sample.defined() || r.per_sample.numel() != batch.size())
        fail("the loss gives no per-sample values for this batch of {} ({}), but the sampler or a hook needs them",
             batch.size(), r.per_sample.defined() ? fmt::format("{} values", r.per_sample.numel()) : "none");
      indices.push_back(batch.indices.to(torch::kCPU));
      sample_losses.push_back(r.per_sample.detach().to(torch::kCPU, torch::kFloat).reshape({-1}));
    }
    trainer.end_micro_batch(MicroBatch{batch, outputs, r, i, phase});
  }
  const StepVerdict verdict = optimization.step(trainer.state().step, loss_sum, n);

  StepResult result;
  result.applied = verdict.applied;
  result.loss = verdict.loss;
  result.grad_norm = verdict.grad_norm;
  for (auto& [name, sum] : part_sums) result.parts[name] = sum / static_cast<double>(n);
  if (per_sample) {
    result.indices = torch::cat(indices);
    result.per_sample = torch::cat(sample_losses);
  }
  const std::string where = fmt::format("step {}{}", trainer.state().step + 1, phase.empty() ? "" : " (" + phase + ")");
  if (verdict.non_finite) {
    const auto bad_parts = verdict.loss_non_finite ? non_finite_names(result.parts) : std::vector<std::string>{};
    const std::string what = verdict.loss_non_finite
                                 ? fmt::format("loss ({})", bad_parts.empty() ? "total, on some rank" : join(bad_parts))
                                 : "gradients";
    if (o.non_finite == NonFinite::stop) {
      const auto bad = optimization.non_finite_gradients();
      fail("{}: non-finite {}; parameters with non-finite gradients: {}. Lower the learning rate, enable "
           "train.clip_norm, or set train.non_finite: skip",
           where, what, bad.empty() ? "none" : join(bad));
    }
    result.skipped = "non-finite " + what;
    result.non_finite = true;
    log::warn("{}: non-finite {} — step skipped (train.non_finite: skip)", where, what);
  } else if (verdict.overflow) {
    result.skipped = "fp16 overflow";
    log::debug("{}: fp16 gradients overflowed; the scale backs off", where);
  }
  return result;
}

}  // namespace facet::train
