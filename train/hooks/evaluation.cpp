#include "train/hooks/builtin.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

class EvaluationHook : public Hook {
 public:
  explicit EvaluationHook(const TrainOptions& o) : every_(o.eval_every) {}
  std::string name() const override { return "evaluation"; }
  int priority() const override { return hook_priority::evaluation; }

  void after_step(Trainer& trainer, const StepResult&) override {
    const auto& s = trainer.state();
    if ((every_ > 0 && s.step % every_ == 0) || s.step == s.total_steps) evaluate(trainer);
  }
  void after_epoch(Trainer& trainer) override {
    const auto& s = trainer.state();
    if (every_ == 0 && s.step < s.total_steps) evaluate(trainer);
  }
  void after_train(Trainer& trainer) override {  // a resumed finished run
    if (evaluated_at_ != trainer.state().step) evaluate(trainer);
  }

 private:
  void evaluate(Trainer& trainer) {
    trainer.evaluate();
    evaluated_at_ = trainer.state().step;
  }

  int64_t every_;
  int64_t evaluated_at_ = -1;
};

}  // namespace

std::shared_ptr<Hook> make_evaluation_hook(const TrainOptions& options) { return std::make_shared<EvaluationHook>(options); }

}  // namespace facet::train
