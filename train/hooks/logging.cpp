#include "train/hooks/builtin.h"
#include "train/optimization.h"
#include "train/progress.h"
#include "train/trainer.h"

#include "core/log.h"

namespace facet::train {
namespace {

class LoggingHook : public Hook {
 public:
  explicit LoggingHook(const TrainOptions& o) : every_(o.log_every), accum_(o.grad_accum) {}
  std::string name() const override { return "logging"; }
  int priority() const override { return hook_priority::logging; }

  void before_train(Trainer& trainer) override {
    progress_ = std::make_unique<Progress>(trainer.state().total_steps, every_, trainer.runtime().leader());
  }

  void after_step(Trainer& trainer, const StepResult& result) override {
    const auto& s = trainer.state();
    const double lr = trainer.optimizations().front()->lr();
    const int64_t samples = trainer.loader().local_batch_size() * trainer.runtime().world_size() * accum_;
    progress_->update(s.step, s.epoch, result.loss, lr, samples);
    if (s.step % every_ != 0 && s.step != s.total_steps) return;
    // One transfer (and with several ranks one all-reduce) for the loss and all its parts.
    std::vector<std::string> names{"loss"};
    std::vector<torch::Tensor> values{torch::tensor(result.loss, torch::kFloat)};
    for (const auto& [name, value] : result.parts) {
      names.push_back(name);
      values.push_back(value.to(torch::kCPU, torch::kFloat).reshape({}));
    }
    torch::Tensor all = torch::stack(values).to(torch::kDouble);
    if (auto* group = trainer.runtime().group.get()) group->allreduce_mean_(all);
    std::map<std::string, double> scalars;
    for (size_t i = 0; i < names.size(); ++i) scalars[names[i]] = all[static_cast<int64_t>(i)].item<double>();
    for (const auto& o : trainer.optimizations()) scalars[o->name() == "main" ? "lr" : "lr/" + o->name()] = o->lr();
    scalars["grad_norm"] = result.grad_norm;
    trainer.log_scalars("train", scalars);
  }

  void before_eval(Trainer&) override {
    if (progress_) progress_->break_line();  // none when evaluate() is called outside fit()
  }

  void after_train(Trainer& trainer) override {
    progress_->break_line();
    if (const int64_t n = trainer.state().skipped_steps)
      log::warn("{} step(s) were skipped because of non-finite values or fp16 overflow", n);
  }

 private:
  int64_t every_, accum_;
  std::unique_ptr<Progress> progress_;
};

}  // namespace

std::shared_ptr<Hook> make_logging_hook(const TrainOptions& options) { return std::make_shared<LoggingHook>(options); }

}  // namespace facet::train
