// The `mc_dropout` hook: Mo-SCL's optional uncertainty (curriculum/mc_dropout.h). Every `every`
// steps it runs `passes` stochastic forward passes on each micro-batch after its backward (dropout
// on, BatchNorm in eval: running statistics untouched), gathers the per-sample score variances over
// ranks and feeds them to the curriculum sampler, which must use `difficulty.uncertainty: mc_dropout`.
// The trainer reseeds the random streams before every micro-batch, so the extra passes change
// nothing in the training itself.
//
//   hooks:
//     - {name: mc_dropout, every: 1, passes: 8, output: logits, top_k: 10}
//
// [choice] every: 1 — each visit of a sample refreshes its estimate; raise it to trade freshness
// for time (bench/lesion_switches.cpp measures the cost).
#include "curriculum/mc_dropout.h"
#include "curriculum/samplers.h"
#include "train/hook.h"
#include "train/step.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

class McDropoutHook : public Hook {
 public:
  explicit McDropoutHook(const Config& c) : every_(c.get_in_range<int64_t>("every", 1, Range::at_least(1))) {
    options_.passes = c.get_in_range<int64_t>("passes", options_.passes, Range::at_least(2));
    options_.output = c.get<std::string>("output", options_.output);
    options_.top_k = c.get_in_range<int64_t>("top_k", options_.top_k, Range::at_least(1));
  }
  std::string name() const override { return "mc_dropout"; }
  // Right after the sampler has learnt the step's losses.
  int priority() const override { return hook_priority::curriculum + 1; }

  void before_train(Trainer& trainer) override {
    auto* s = dynamic_cast<curriculum::CurriculumSampler*>(&trainer.sampler());
    if (!s || s->estimator().options().uncertainty != "mc_dropout")
      fail("hooks: mc_dropout feeds a curriculum sampler with data.sampler.difficulty.uncertainty: mc_dropout "
           "(e.g. data.sampler: {{name: mo_scl, difficulty: {{uncertainty: mc_dropout}}}})");
    sampler_ = s;
  }

  void after_micro_batch(Trainer& trainer, const MicroBatch& micro) override {
    if (trainer.state().step % every_ != 0 || micro.batch.size() == 0) return;
    indices_.push_back(micro.batch.indices.to(torch::kCPU));
    values_.push_back(curriculum::mc_dropout_variance(trainer.model(), micro.batch, options_).to(torch::kCPU, torch::kDouble));
  }

  void after_step(Trainer& trainer, const StepResult&) override {
    if ((trainer.state().step - 1) % every_ != 0) return;  // the step just done (state().step counts it already)
    torch::Tensor idx = indices_.empty() ? torch::empty({0}, torch::kLong) : torch::cat(indices_);
    torch::Tensor val = values_.empty() ? torch::empty({0}, torch::kDouble) : torch::cat(values_);
    indices_.clear(), values_.clear();
    if (auto* group = trainer.runtime().group.get()) {
      idx = group->allgather_varying(idx).cpu();
      val = group->allgather_varying(val).cpu();
    }
    if (idx.numel() > 0) sampler_->feedback_uncertainty(idx, val);
  }

 private:
  int64_t every_;
  curriculum::McDropoutOptions options_;
  curriculum::CurriculumSampler* sampler_ = nullptr;
  std::vector<torch::Tensor> indices_, values_;
};

FACET_REGISTER(hook_registry(), "mc_dropout",
               "Mo-SCL MC-dropout uncertainty: every N steps, T passes with dropout on (BatchNorm frozen) feed score variances "
               "to the curriculum sampler (every, passes, output, top_k)",
               [](const Config& c) { return std::make_shared<McDropoutHook>(c); });

}  // namespace
}  // namespace facet::train
