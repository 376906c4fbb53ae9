#include "train/optimization.h"

#include "core/log.h"

#include <cmath>

namespace facet::train {

Optimization::Optimization(std::string name, const Config& optim, const Config* schedule, torch::nn::Module& model,
                           const ScheduleSpan& span, const OptimizationSettings& settings, torch::Device device,
                           ProcessGroup* group)
    : name_(std::move(name)), settings_(settings), device_(device), group_(group) {
  auto groups = make_param_groups(optim, model);
  base_lrs_ = base_learning_rates(groups);
  std::map<const void*, std::string> names;
  for (const auto& item : model.named_parameters()) names[item.value().unsafeGetTensorImpl()] = item.key();
  for (const auto& g : groups)
    for (const auto& p : g.params) {
      params_.push_back(p);
      param_names_.push_back(names[p.unsafeGetTensorImpl()]);
    }
  optimizer_ = optimizer_registry().create(optim, groups);
  schedule_ = schedule ? schedule_registry().create(*schedule, span)
                       : schedule_registry().create(Config::parse("name: constant"), span);
  if (settings_.amp == torch::kHalf) scaler_ = std::make_unique<GradScaler>(device_);
  if (group_ && settings_.overlap_grad_reduce)
    reducer_ = std::make_unique<OverlappedGradientReducer>(*group_, params_, settings_.bucket_bytes);
}

Optimization::~Optimization() = default;

double Optimization::lr() const { return optimizer_->param_groups().front().options().get_lr(); }

void Optimization::zero_grad() { optimizer_->zero_grad(/*set_to_none=*/true); }

void Optimization::backward(const torch::Tensor& loss, bool last_micro_batch) {
  torch::Tensor scaled = loss.to(torch::kFloat);
  if (settings_.grad_accum > 1) scaled = scaled / static_cast<double>(settings_.grad_accum);
  if (scaler_) scaled = scaler_->scale(scaled);
  // Only the last micro-batch's backward communicates: earlier ones just accumulate locally.
  const bool overlap = reducer_ && last_micro_batch;
  if (overlap) reducer_->arm();
  scaled.backward();
  if (overlap) reducer_->finish();
}

StepVerdict Optimization::step(int64_t step, const torch::Tensor& loss_sum, int64_t micro_batches) {
  torch::NoGradGuard no_grad;
  if (group_ && !reducer_) group_->allreduce_gradients(params_, settings_.bucket_bytes);
  // Every value the verdict needs, on the device, read back in one transfer: the loss, whether it
  // was finite on any rank, the gradient norm, and the fp16 scaler's overflow flag. Gradients are
  // identical on every rank after the all-reduce, so their norm and overflow are too.
  torch::Tensor loss_flag = torch::isfinite(loss_sum).logical_not().to(torch::kFloat).reshape({1});
  if (group_) group_->allreduce_sum_(loss_flag);
  torch::Tensor found_inf = scaler_ ? scaler_->unscale_(params_) : torch::zeros({1}, loss_flag.options());
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_)
    if (p.grad().defined()) grads.push_back(p.grad());
  torch::Tensor norm = torch::zeros({1}, loss_flag.options());
  if (!grads.empty()) {
    const torch::Tensor total = torch::stack(torch::_foreach_norm(grads)).to(torch::kFloat).norm();
    if (settings_.clip_norm > 0) {
      // clip_grad_norm_ without its host sync: a factor of at most 1, applied on the device.
      const torch::Tensor factor = (settings_.clip_norm / (total + 1e-6)).clamp_max(1.0);
      torch::_foreach_mul_(grads, factor.to(grads.front().dtype()));
    }
    norm = total.reshape({1});
  }
  const torch::Tensor host =
      torch::cat({loss_sum.detach().to(torch::kFloat).reshape({1}).to(loss_flag.device()), loss_flag, norm,
                  found_inf.to(loss_flag.device())})
          .to(torch::kCPU, torch::kDouble);
  const double* v = host.data_ptr<double>();
  StepVerdict verdict;
  verdict.loss = v[0] / static_cast<double>(micro_batches);
  verdict.loss_non_finite = v[1] > 0;
  verdict.grad_norm = v[2];
  verdict.overflow = v[3] > 0;
  verdict.non_finite = verdict.loss_non_finite || (!std::isfinite(verdict.grad_norm) && !verdict.overflow);
  if (scaler_) scaler_->update(found_inf);
  if (verdict.non_finite || verdict.overflow) return verdict;
  apply_learning_rates(*optimizer_, base_lrs_, *schedule_, step);
  optimizer_->step();
  verdict.applied = true;
  return verdict;
}

std::vector<std::string> Optimization::non_finite_gradients() const {
  std::vector<std::string> bad;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].grad().defined() && !torch::isfinite(params_[i].grad()).all().item<bool>())
      bad.push_back(param_names_[i]);
  return bad;
}

}  // namespace facet::train
