// The two single-objective steps: `supervised` (the config's loss on the model's outputs) and
// `model_losses` (the model computes its losses itself, as two-stage detectors do).
#include "models/model.h"
#include "train/step.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

class SupervisedStep : public TrainStep {
 public:
  bool uses_loss() const override { return true; }
  StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) override {
    return run_objective(trainer, micro_batches, trainer.optimization(), [&](const data::Batch& batch, Outputs& outputs) {
      outputs = trainer.forward(batch);
      return trainer.loss()(outputs, batch);
    });
  }
};

class ModelLossesStep : public TrainStep {
 public:
  explicit ModelLossesStep(models::ComputesLosses& model) : model_(model) {}
  StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) override {
    return run_objective(trainer, micro_batches, trainer.optimization(), [&](const data::Batch& batch, Outputs& outputs) {
      return model_.forward_losses(batch, outputs);
    });
  }

 private:
  models::ComputesLosses& model_;
};

FACET_REGISTER(step_registry(), "supervised", "Forward, the config's loss, backward (the default)",
               [](const Config&, torch::nn::Module&) { return std::make_shared<SupervisedStep>(); });

FACET_REGISTER(step_registry(), "model_losses", "The model returns its own losses (two-stage detectors)",
               [](const Config& c, torch::nn::Module& model) {
                 auto* m = dynamic_cast<models::ComputesLosses*>(&model);
                 if (!m) fail("{}: {}: step model_losses needs a model that computes its own losses; {} does not",
                              c.where("name"), c.full_key("name"), model.name());
                 return std::make_shared<ModelLossesStep>(*m);
               });

}  // namespace
}  // namespace facet::train
