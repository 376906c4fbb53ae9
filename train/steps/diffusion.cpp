// `diffusion`: the denoising objective of DDPM / latent diffusion. Per micro-batch the model's
// encoders give the clean input x0 and the condition (models::Denoiser::encode: frozen parts run
// without gradients, learned words and mappers with them), the step
// draws a timestep per sample and Gaussian noise — from the micro-batch's own random stream, so a
// resumed run draws the same — noises x0 (models/generative/noise_schedule.h) and regresses the
// network's prediction on ε (or v, or x0) with a per-sample mean squared error. With a loss mask
// each sample's error is averaged over its mask, not over every pixel: averaging over all pixels
// would scale the effective learning rate with the masked area (Custom Diffusion's masked loss).
// The model's regularizers (DETEX's penalty on mapped words) are added to the total.
//
// A model that samples with its own noise schedule (models::Denoiser::noise_schedule: Stable
// Diffusion) trains with it: the step's keys may repeat its values but not contradict them.
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
  DiffusionStep(const Config& c, models::Denoiser& model) : model_(model), schedule_(schedule_options(c, model)) {}

  StepResult run(Trainer& trainer, std::vector<data::Batch>& micro_batches) override {
    return run_objective(trainer, micro_batches, trainer.optimization(), [&](const data::Batch& batch, Outputs& outputs) {
      models::DenoiserInputs inputs = model_.encode(batch);
      const torch::Tensor x0 = inputs.x0.detach();
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
      for (const auto& [name, value] : inputs.regularizers) {
        r.parts[name] = value;
        r.total = r.total + value;
      }
      return r;
    });
  }

 private:
  // The step's keys, or the model's schedule when it has one (keys that disagree with it are an error).
  static models::NoiseScheduleOptions schedule_options(const Config& c, const models::Denoiser& model) {
    const models::NoiseScheduleOptions asked = models::NoiseScheduleOptions::from(c);
    const models::NoiseSchedule* own = model.noise_schedule();
    if (!own) return asked;
    const models::NoiseScheduleOptions& m = own->options();
    auto check = [&](const char* key, const auto& step_value, const auto& model_value) {
      if (c.has(key) && step_value != model_value)
        fail("{}: {}: {} disagrees with the model's noise schedule ({}), which it samples with; leave the key out",
             c.where(key), c.full_key(key), step_value, model_value);
    };
    check("num_timesteps", asked.num_timesteps, m.num_timesteps);
    check("beta_schedule", asked.beta_schedule, m.beta_schedule);
    check("beta_start", asked.beta_start, m.beta_start);
    check("beta_end", asked.beta_end, m.beta_end);
    check("prediction", asked.prediction, m.prediction);
    return m;
  }

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
