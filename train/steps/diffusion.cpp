// `diffusion`: the denoising objective of DDPM / latent diffusion. Per micro-batch the model's
// frozen encoders give the clean input x0 (models::Denoiser::encode, without gradients), the step
// draws a timestep per sample and Gaussian noise — from the micro-batch's own random stream, so a
// resumed run draws the same — noises x0 (models/generative/noise_schedule.h) and regresses the
// network's prediction on ε (or v, or x0) with a per-sample mean squared error. With a loss mask
// each sample's error is averaged over its mask, not over every pixel: averaging over all pixels
// would scale the effective learning rate with the masked area (Custom Diffusion's masked loss).
//
//   step: {name: diffusion, num_timesteps: 1000, beta_schedule: scaled_linear, beta_start: 0.00085,
//          beta_end: 0.012, prediction: epsilon}
#include "models/generative/noise_schedule.h"
#include "models/model.h"
#include "train/step.h"
#include "train/trainer.h"

namespace facet::train {
namespace {

class DiffusionStep : public TrainStep {
 public:
  DiffusionStep(const Config& c, models::Denoiser& model)
      : model_(model), schedule_(models::NoiseScheduleOptions::from(c)) {}

  StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) override {
    return run_objective(trainer, micro_batches, trainer.optimization(), [&](const data::Batch& batch, Outputs& outputs) {
      models::DenoiserInputs inputs;
      {
        torch::NoGradGuard no_grad;
        inputs = model_.encode(batch);
      }
      const torch::Tensor& x0 = inputs.x0;
      const int64_t b = x0.size(0);
      const torch::Tensor t =
          torch::randint(schedule_.options().num_timesteps, {b}, torch::TensorOptions().dtype(torch::kLong).device(x0.device()));
      const torch::Tensor noise = torch::randn_like(x0);
      const torch::Tensor noisy = schedule_.add_noise(x0, noise, t);
      const torch::Tensor prediction = model_.denoise(noisy, t, inputs);
      const torch::Tensor error = (prediction.to(torch::kFloat) - schedule_.target(x0, noise, t).to(torch::kFloat)).pow(2);
      torch::Tensor per_sample;
      if (inputs.loss_mask.defined()) {
        const torch::Tensor mask = inputs.loss_mask.to(torch::kFloat).expand_as(error);
        per_sample = (error * mask).reshape({b, -1}).sum(1) / mask.reshape({b, -1}).sum(1).clamp_min(1.0);
      } else {
        per_sample = error.reshape({b, -1}).mean(1);
      }
      outputs["prediction"] = prediction;
      outputs["timesteps"] = t;
      losses::LossResult r;
      r.per_sample = per_sample;
      r.total = per_sample.mean();
      r.parts["mse"] = r.total;
      return r;
    });
  }

 private:
  models::Denoiser& model_;
  models::NoiseSchedule schedule_;
};

FACET_REGISTER(step_registry(), "diffusion", "Denoising diffusion: timesteps and noise drawn per batch, frozen encoders",
               [](const Config& c, torch::nn::Module& model) {
                 auto* m = dynamic_cast<models::Denoiser*>(&model);
                 if (!m) fail("{}: {}: step diffusion needs a denoising model; {} is not", c.where("name"), c.full_key("name"),
                              model.name());
                 return std::make_shared<DiffusionStep>(c, *m);
               });

}  // namespace
}  // namespace facet::train
