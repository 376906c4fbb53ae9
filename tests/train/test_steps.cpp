// The training step kinds: each trains (a detector computing its own losses, a GAN in two phases
// with two optimisers, a latent denoiser with a frozen encoder), and each resumes exactly after a
// crash, with accumulation, fp16 scaling and EMA where the kind allows.
#include "core/file_io.h"
#include "core/safetensors.h"
#include "models/generative/noise_schedule.h"
#include "tests/support/scratch.h"
#include "tests/train/toys.h"
#include "train/builder.h"
#include "train/optimization.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::train::test_steps {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_steps", name); }

// The training loss logged at each step (metrics.csv, log_every 1).
std::vector<double> logged_losses(const fs::path& run) {
  std::vector<double> out;
  const std::string csv = read_file(run / "metrics.csv");
  size_t at = 0;
  while ((at = csv.find(",train/loss,", at)) != std::string::npos) {
    at += 12;
    out.push_back(std::stod(csv.substr(at, csv.find('\n', at) - at)));
  }
  return out;
}

double mean_of(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

Config detector(const std::vector<std::string>& extra = {}) {
  Config c = Config::parse(R"(
experiment: toy_detector
seed: 3
data: {name: toy_squares, size: 64, batch_size: 16, workers: 1}
model: {name: toy_detector}
step: {name: model_losses}
metrics: [{name: toy_record_mean, key: box}]
optim: {name: adam, lr: 3.0e-3}
train: {max_steps: 150, eval_every: 0, log_every: 1, threads: 1}
)");
  for (const auto& o : extra) c.set(o.substr(0, o.find('=')), o.substr(o.find('=') + 1));
  return c;
}

Config gan(const std::vector<std::string>& extra = {}) {
  Config c = Config::parse(R"(
experiment: toy_gan
seed: 5
data: {name: toy_gaussian, size: 512, mean: 4.0, std: 0.5, batch_size: 64, workers: 1}
model: {name: toy_gan}
step:
  name: alternating
  phases: [{phase: discriminator, optimizer: discriminator}, {phase: generator, optimizer: generator}]
optimizers:
  generator: {name: adam, lr: 1.0e-2, betas: [0.5, 0.999], params: ["generator.*"]}
  discriminator: {name: adam, lr: 1.0e-2, betas: [0.5, 0.999], params: ["discriminator.*"]}
train: {max_steps: 400, eval_every: 0, log_every: 1, threads: 1}
)");
  for (const auto& o : extra) c.set(o.substr(0, o.find('=')), o.substr(o.find('=') + 1));
  return c;
}

// The frozen encoder's weights, written once: conv weights and non-trivial BatchNorm statistics.
fs::path encoder_weights() {
  const fs::path file = fresh_dir("encoder") / "encoder.safetensors";
  fs::create_directories(file.parent_path());
  torch::manual_seed(42);
  safetensors::TensorMap t;
  t["0.weight"] = torch::randn({4, 1, 3, 3}) * 0.5;
  t["0.bias"] = torch::randn({4}) * 0.1;
  t["1.weight"] = torch::rand({4}) + 0.5;
  t["1.bias"] = torch::randn({4}) * 0.1;
  t["1.running_mean"] = torch::randn({4}) * 0.2;
  t["1.running_var"] = torch::rand({4}) + 0.5;
  t["1.num_batches_tracked"] = torch::tensor(int64_t{100});
  safetensors::save(file, t);
  return file;
}

Config denoiser(const fs::path& encoder, const std::vector<std::string>& extra = {}) {
  Config c = Config::parse(R"(
experiment: toy_denoiser
seed: 9
data: {name: synthetic_shapes, train_size: 256, image_size: 16, noise: 0.05, augment_flip: false, batch_size: 16, workers: 1}
model: {name: toy_denoiser}
step: {name: diffusion, num_timesteps: 100, beta_schedule: linear, beta_start: 1.0e-3, beta_end: 0.2}
optim: {name: adam, lr: 2.0e-3, freeze: ["encoder.*"]}
train: {max_steps: 240, eval_every: 0, log_every: 1, threads: 1}
)");
  c.set("train.init_weights", fmt::format("[{{path: {}, add_prefix: encoder.}}]", encoder.string()));
  for (const auto& o : extra) c.set(o.substr(0, o.find('=')), o.substr(o.find('=') + 1));
  return c;
}

TEST(Steps, ModelLossesTrainsADetectorThatComputesItsOwnLosses) {
  const fs::path run = fresh_dir("detector");
  Trainer t(detector(), run);
  t.fit();
  const auto losses = logged_losses(run);
  ASSERT_EQ(losses.size(), 150u);
  const double first = mean_of(losses, 0, 10), last = mean_of(losses, 140, 150);
  std::printf("detector L1: first 10 steps %.2f px, last 10 %.2f px\n", first, last);
  EXPECT_LT(last, first / 3);
  EXPECT_THAT(test_support::message_of([] { Trainer t(detector({"loss={name: cross_entropy}"}), fresh_dir("x")); }),
              HasSubstr("computes its losses itself; remove `loss`"));
  EXPECT_THAT(test_support::message_of([] {
                Config c = Config::parse("data: {name: synthetic_shapes, batch_size: 8}\nmodel: {name: simple_cnn}\n"
                                         "step: {name: model_losses}\noptim: {name: sgd, lr: 0.1}\ntrain: {max_steps: 1}");
                Trainer t(c, fresh_dir("y"));
              }),
              HasSubstr("step.name: step model_losses needs a model that computes its own losses"));
}

TEST(Steps, AlternatingTrainsAGanWithOneOptimiserPerPhase) {
  const fs::path run = fresh_dir("gan");
  Trainer t(gan(), run);
  t.fit();
  auto& model = dynamic_cast<torch::nn::Module&>(t.model());
  const auto params = model.named_parameters();
  const double bias = params["generator.bias"].item<double>(), scale = std::abs(params["generator.weight"].item<double>());
  std::printf("generator: x = %.3f z + %.3f (data: mean 4, std 0.5)\n", scale, bias);
  EXPECT_NEAR(bias, 4.0, 0.5) << "the generated mean moves from about 0 to the data's mean";
  const std::string csv = read_file(run / "metrics.csv");
  EXPECT_THAT(csv, HasSubstr("train/lr/generator"));
  EXPECT_THAT(csv, HasSubstr("train/discriminator/real"));
  EXPECT_EQ(t.optimization("generator").params().size(), 2u);
  EXPECT_EQ(t.optimization("discriminator").params().size(), 6u);
  // Two optimisers over one parameter are refused.
  EXPECT_THAT(test_support::message_of([] {
                Trainer t(gan({"optimizers.generator.params=[\"*\"]", "train.max_steps=1"}), fresh_dir("overlap"));
              }),
              HasSubstr("optimisers \"discriminator\" and \"generator\" both train the same parameter"));
  EXPECT_THAT(test_support::message_of([] {
                Trainer t(gan({"step.phases=[{phase: critic, optimizer: generator}]"}), fresh_dir("phase"));
              }),
              HasSubstr("the model has no phase \"critic\" (its phases: discriminator, generator)"));
}

// Data beyond float's range makes every phase's loss non-finite: each step is skipped and counted
// once, as a supervised step's would be.
TEST(Steps, AlternatingCountsTheStepsItSkipsForNonFiniteValues) {
  Trainer t(gan({"data.mean=1.0e39", "train.max_steps=3", "train.non_finite=skip"}), fresh_dir("gan_inf"));
  t.fit();
  EXPECT_EQ(t.state().skipped_steps, 3);
}

TEST(Steps, DiffusionLearnsToDenoiseWithAFrozenEncoderInEvalMode) {
  const fs::path run = fresh_dir("denoiser"), weights = encoder_weights();
  Trainer t(denoiser(weights), run);
  t.fit();
  const auto losses = logged_losses(run);
  const double first = mean_of(losses, 0, 20), last = mean_of(losses, losses.size() - 40, losses.size());
  std::printf("denoising MSE: first 20 steps %.3f, last 40 %.3f (predicting no noise: 1.0)\n", first, last);
  EXPECT_LT(last, 0.6);
  EXPECT_LT(last, first * 0.75);
  // The frozen encoder ran in eval mode: its BatchNorm statistics are still the file's.
  const auto saved = safetensors::load(weights);
  const auto now = safetensors::state_dict(t.model());
  for (const auto& [name, tensor] : saved) EXPECT_TRUE(torch::equal(now.at("encoder." + name).cpu(), tensor)) << name;
  // The checkpoint holds what trains and references the frozen encoder by its file and hash.
  const fs::path saved_at = fs::canonical(run / "checkpoints/last");
  const auto checkpoint = safetensors::load(saved_at / "model.safetensors");
  EXPECT_EQ(checkpoint.count("encoder.0.weight"), 0u);
  EXPECT_EQ(checkpoint.count("encoder.1.running_mean"), 0u);
  EXPECT_EQ(checkpoint.count("conv_in.weight"), 1u);
  const auto state = nlohmann::json::parse(read_file(saved_at / "state.json"));
  ASSERT_EQ(state.at("frozen_weights").size(), 1u);
  EXPECT_EQ(state.at("frozen_weights")[0].at("path"), weights.string());
  EXPECT_EQ(state.at("frozen_weights")[0].at("content_hash").get<std::string>().rfind("xxh64:", 0), 0u);
  // Evaluation rebuilds the whole model from the two; a changed encoder file is refused, naming it.
  auto model = build_model(t.config(), t.options(), torch::kCPU);
  load_checkpoint_weights(*model, saved_at, false, torch::kCPU);
  const auto rebuilt = safetensors::state_dict(*model);
  for (const auto& [name, tensor] : now) EXPECT_TRUE(torch::equal(rebuilt.at(name), tensor.cpu())) << name;
  auto changed = saved;
  changed["0.bias"] = changed["0.bias"] + 1;
  safetensors::save(weights, changed);
  EXPECT_THAT(test_support::message_of([&] { load_checkpoint_weights(*build_model(t.config(), t.options(), torch::kCPU), saved_at, false, torch::kCPU); }),
              HasSubstr(weights.string()));
}

TEST(Steps, NoiseScheduleMatchesTheDdpmFormulas) {
  models::NoiseScheduleOptions o;
  o.num_timesteps = 10;
  o.beta_schedule = "scaled_linear";
  o.beta_start = 0.00085;
  o.beta_end = 0.012;
  const models::NoiseSchedule s(o);
  EXPECT_NEAR(s.betas()[0].item<double>(), 0.00085, 1e-9);
  EXPECT_NEAR(s.betas()[9].item<double>(), 0.012, 1e-8);
  EXPECT_NEAR(s.betas()[5].item<double>(), std::pow(std::sqrt(0.00085) + 5.0 / 9 * (std::sqrt(0.012) - std::sqrt(0.00085)), 2), 1e-8);
  double abar = 1;
  for (int i = 0; i < 10; ++i) abar *= 1 - s.betas()[i].item<double>();
  EXPECT_NEAR(s.alphas_cumprod()[9].item<double>(), abar, 1e-6);
  const auto x0 = torch::ones({2, 3}), noise = torch::full({2, 3}, 2.0), t = torch::tensor({0, 9});
  const auto noisy = s.add_noise(x0, noise, t);
  EXPECT_NEAR(noisy[1][0].item<double>(), std::sqrt(abar) + 2 * std::sqrt(1 - abar), 1e-5);
  o.prediction = "v_prediction";
  const auto v = models::NoiseSchedule(o).target(x0, noise, t);
  EXPECT_NEAR(v[1][0].item<double>(), std::sqrt(abar) * 2 - std::sqrt(1 - abar), 1e-5);
}

// A run that crashes after the checkpoint at `crash_at` and is resumed ends with the same weights
// (and optimiser, scaler and EMA state) as one that never stopped.
void expect_exact_resume(const std::string& name, const std::function<Config()>& make, int64_t crash_at) {
  const fs::path straight = fresh_dir(name + "_straight"), broken = fresh_dir(name + "_broken");
  {
    Trainer t(make(), straight);
    t.fit();
  }
  {
    Config c = make();
    c.set("train.checkpoint_every", std::to_string(crash_at));
    c.set("hooks", fmt::format("[{{name: recording, label: crash, priority: 95, crash_at_step: {}}}]", crash_at));
    Trainer t(c, broken);
    EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr("toy crash"));
  }
  {
    Config c = make();
    c.set("train.checkpoint_every", std::to_string(crash_at));
    c.set("hooks", fmt::format("[{{name: recording, label: crash, priority: 95, crash_at_step: {}}}]", crash_at));
    Trainer t(c, broken, Mode::resume);
    t.fit();
  }
  for (const char* file : {"model.safetensors", "ema.safetensors"}) {
    const fs::path a = straight / "checkpoints/last" / file, b = broken / "checkpoints/last" / file;
    if (!fs::exists(a)) continue;
    EXPECT_EQ(read_file(a), read_file(b)) << name << ": " << file << " differs after the resume";
  }
}

TEST(Steps, EveryStepKindResumesExactly) {
  toys::recording().clear();
  // Supervised, with accumulation over an epoch boundary, random flips, dropout, EMA and fp16
  // autocast with its gradient scaler.
  expect_exact_resume("supervised", [] {
    return toys::shapes_experiment({"data.train_size=96", "data.batch_size=16", "train.grad_accum=2", "model.dropout=0.3",
                                    "train.max_steps=8", "train.eval_every=0", "train.ema_decay=0.9", "train.amp=fp16",
                                    "data.workers=1"});
  }, 4);
  expect_exact_resume("model_losses", [] { return detector({"train.max_steps=8", "train.grad_accum=2", "train.ema_decay=0.8"}); }, 3);
  expect_exact_resume("alternating", [] { return gan({"train.max_steps=10"}); }, 6);
  const fs::path weights = encoder_weights();
  expect_exact_resume("diffusion", [&] { return denoiser(weights, {"train.max_steps=8", "train.grad_accum=2"}); }, 5);
}

}  // namespace
}  // namespace facet::train::test_steps
