#include "train/hooks/builtin.h"
#include "train/step.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

// Every rank passes the same gathered values, so every rank's sampler stays in the same state.
class CurriculumHook : public Hook {
 public:
  std::string name() const override { return "curriculum"; }
  int priority() const override { return hook_priority::curriculum; }
  bool wants_per_sample() const override { return true; }
  void after_step(Trainer& trainer, const StepResult& result) override {
    if (result.indices.defined() && result.indices.numel() > 0) trainer.sampler().feedback(result.indices, result.per_sample);
  }
};

}  // namespace

std::shared_ptr<Hook> make_curriculum_hook() { return std::make_shared<CurriculumHook>(); }

}  // namespace facet::train
