// `alternating`: several phases per step, in the configured order, each minimising the model's loss
// for that phase with its own optimiser (and schedule, and fp16 scaler) — a GAN's discriminator,
// then its generator:
//
//   step:
//     name: alternating
//     phases:
//       - {phase: discriminator, optimizer: discriminator}
//       - {phase: generator, optimizer: generator}
//   optimizers:
//     generator: {name: adam, lr: 2.0e-4, betas: [0.5, 0.999], params: ["generator.*"]}
//     discriminator: {name: adam, lr: 2.0e-4, betas: [0.5, 0.999], params: ["discriminator.*"]}
//
// Each phase sees every micro-batch. The step's loss is the sum of the phases' losses; its parts are
// logged as <phase>/<part>, and each phase's total as <phase>.
#include "core/text.h"
#include "models/model.h"
#include "train/step.h"
#include "train/trainer.h"

#include <algorithm>

namespace facet::train {
namespace {

class AlternatingStep : public TrainStep {
 public:
  AlternatingStep(const Config& c, models::PhasedObjective& model) : model_(model) {
    const Config list = c.at("phases");
    if (!list.is_list() || list.size() == 0)
      fail("{}: {}: expected a list of {{phase, optimizer}}", c.where("phases"), c.full_key("phases"));
    const auto known = model.phases();
    for (size_t i = 0; i < list.size(); ++i) {
      const Config p = list.at(i);
      Phase phase{p.get<std::string>("phase"), p.get<std::string>("optimizer")};
      if (std::find(known.begin(), known.end(), phase.name) == known.end())
        fail("{}: {}: the model has no phase \"{}\" (its phases: {})", p.where("phase"), p.full_key("phase"), phase.name,
             join(known));
      phases_.push_back(std::move(phase));
    }
  }

  std::vector<std::string> optimizers() const override {
    std::vector<std::string> out;
    for (const auto& p : phases_)
      if (std::find(out.begin(), out.end(), p.optimizer) == out.end()) out.push_back(p.optimizer);
    return out;
  }

  StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) override {
    StepResult total;
    total.applied = true;
    for (size_t i = 0; i < phases_.size(); ++i) {
      const Phase& phase = phases_[i];
      StepResult r = run_objective(
          trainer, micro_batches, trainer.optimization(phase.optimizer),
          [&](const data::Batch& batch, Outputs& outputs) { return model_.phase_loss(phase.name, batch, outputs); },
          phase.name, i);
      total.applied = total.applied && r.applied;
      if (!r.applied && total.skipped.empty()) total.skipped = phase.name + ": " + r.skipped;
      total.non_finite = total.non_finite || r.non_finite;
      total.loss += r.loss;
      total.grad_norm = r.grad_norm;
      for (auto& [name, value] : r.parts) total.parts[phase.name + "/" + name] = value;
      total.parts[phase.name] = torch::tensor(r.loss);
      if (r.indices.defined()) {  // per-sample values of the last phase
        total.indices = r.indices;
        total.per_sample = r.per_sample;
      }
    }
    return total;
  }

 private:
  struct Phase {
    std::string name, optimizer;
  };
  models::PhasedObjective& model_;
  std::vector<Phase> phases_;
};

FACET_REGISTER(step_registry(), "alternating", "Phases in order, one optimiser each (generator / discriminator)",
               [](const Config& c, torch::nn::Module& model) {
                 auto* m = dynamic_cast<models::PhasedObjective*>(&model);
                 if (!m) fail("{}: {}: step alternating needs a model trained in phases; {} is not", c.where("name"),
                              c.full_key("name"), model.name());
                 return std::make_shared<AlternatingStep>(c, *m);
               });

}  // namespace
}  // namespace facet::train
