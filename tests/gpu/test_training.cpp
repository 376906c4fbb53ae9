// Training on the GPU through the Trainer (train.device): fp16 autocast with the gradient scaler,
// killed mid-run and resumed, ends as the uninterrupted run (scaler state restored); bf16 autocast
// learns; the loader's pinned batches reach the GPU by non-blocking copies intact; the GPU's random
// stream (dropout) is the same after a resume. Runs are made deterministic (cuDNN, cuBLAS
// workspace), and two uninterrupted runs are compared first, so that a difference after a resume
// is the resume's and not the GPU's.
#include "data/loader.h"
#include "tests/gpu/gpu.h"
#include "tests/support/scratch.h"
#include "train/amp.h"
#include "train/optimization.h"
#include "train/step.h"
#include "train/trainer.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace facet::train::test_training {
namespace {

namespace fs = std::filesystem;

// cuBLAS reads it when its first handle is made: before any test touches the GPU.
[[maybe_unused]] const bool kCublasDeterministic = [] { return ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0) == 0; }();

void deterministic() {
  at::globalContext().setBenchmarkCuDNN(false);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Config shapes(const torch::Device& device, const std::vector<std::string>& overrides) {
  std::vector<std::string> all = {"train.log_every=1000", "data.workers=2", "train.threads=2", "data.eval_size=32",
                                  "train.eval_every=0", "train.device=" + device.str()};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return Config::load(gpu_test::source("experiments/demo/shapes.yaml"), all);
}

// Records every step's loss and what the scaler held after it; optionally sets the fp16 scale at
// one step (so that the scale a resume must restore is not the initial one) and dies at another.
class Probe : public Hook {
 public:
  Probe(int64_t set_scale_at, double scale, int64_t crash_at) : set_at_(set_scale_at), scale_(scale), crash_at_(crash_at) {}
  std::string name() const override { return "gpu_probe"; }
  void after_micro_batch(Trainer& trainer, const MicroBatch& micro) override {
    for (const auto& [key, t] : micro.outputs)
      if (t.defined() && t.is_floating_point()) output_dtypes.insert(t.scalar_type());
  }
  void after_step(Trainer& trainer, const StepResult& result) override {
    const int64_t step = trainer.state().step;
    losses[step] = result.loss;
    if (!result.applied) ++skipped;
    if (auto* scaler = trainer.optimization().scaler()) {
      if (step == set_at_) scaler->scale_tensor().fill_(scale_);
      scales[step] = scaler->scale_tensor().item<double>();
    }
    if (step == crash_at_) throw std::runtime_error("gpu probe: killed at step " + std::to_string(step));
  }
  std::map<int64_t, double> losses, scales;
  std::set<c10::ScalarType> output_dtypes;
  int64_t skipped = 0;

 private:
  int64_t set_at_;
  double scale_;
  int64_t crash_at_;
};

struct Outcome {
  std::shared_ptr<Probe> probe;
  std::string weights;  // checkpoints/last/model.safetensors
  double final_scale = 0;
};

// A run of the shapes experiment with `overrides` in `dir`: straight, or killed at `crash_at` and
// resumed (the resumed part's probe is returned, its losses from the checkpoint's step on). Each
// Trainer gets a freshly loaded config.
Outcome train(const torch::Device& device, const std::vector<std::string>& overrides, const fs::path& dir, int64_t crash_at,
          int64_t set_scale_at = -1, double scale = 0) {
  Outcome r;
  {
    Trainer t(shapes(device, overrides), dir);
    r.probe = std::make_shared<Probe>(set_scale_at, scale, crash_at);
    t.add_hook(r.probe);
    if (crash_at < 0) {
      t.fit();
    } else {
      EXPECT_THROW(t.fit(), std::exception);
    }
  }
  if (crash_at >= 0) {
    Trainer t(shapes(device, overrides), dir, Mode::resume);
    r.probe = std::make_shared<Probe>(set_scale_at, scale, -1);
    t.add_hook(r.probe);
    t.fit();
  }
  r.weights = read_bytes(dir / "checkpoints/last/model.safetensors");
  if (!r.probe->scales.empty()) r.final_scale = r.probe->scales.rbegin()->second;
  return r;
}

TEST(GpuTraining, Fp16WithTheScalerKilledAndResumedEndsAsTheUninterruptedRun) {
  FACET_GPU_DEVICE(device);
  deterministic();
  // Accumulation over an epoch boundary, dropout, fp16 with its scaler; the scale is set to 2^20 at
  // step 3, so the step-6 checkpoint holds a scale that is not the initial 65536.
  const std::vector<std::string> config = {"train.max_steps=12", "train.checkpoint_every=2", "data.train_size=96",
                                           "data.batch_size=16", "train.grad_accum=2", "train.amp=fp16", "model.dropout=0.2"};
  const Outcome a = train(device, config, test_support::scratch_path("facet_gpu", "fp16_a"), -1, 3, 1 << 20);
  const Outcome b = train(device, config, test_support::scratch_path("facet_gpu", "fp16_b"), -1, 3, 1 << 20);
  ASSERT_EQ(a.weights, b.weights) << "two uninterrupted fp16 runs on " << device << " differ: the GPU is not "
                                     "deterministic here, so a resume cannot be compared exactly";
  EXPECT_NE(a.probe->scales.at(6), 65536.0) << "the scale to restore is the initial one: the test would prove nothing";
  const Outcome resumed = train(device, config, test_support::scratch_path("facet_gpu", "fp16_resumed"), 7, 3, 1 << 20);
  EXPECT_EQ(resumed.final_scale, a.final_scale) << "the fp16 scale after the resume is not the uninterrupted run's";
  EXPECT_EQ(resumed.weights, a.weights) << "the resumed fp16 run ends with other weights than the uninterrupted run";
  for (const auto& [step, loss] : resumed.probe->losses)
    EXPECT_EQ(loss, a.probe->losses.at(step)) << "loss of step " << step << " after the resume";
  std::printf("fp16 on %s: scale at step 6 %.0f, final %.0f, %lld of 12 steps skipped (overflow)\n", device.str().c_str(),
              a.probe->scales.at(6), a.final_scale, static_cast<long long>(a.probe->skipped));
}

TEST(GpuTraining, Bf16AutocastLearns) {
  FACET_GPU_DEVICE(device);
  const Outcome r = train(device, {"train.max_steps=60", "data.train_size=640", "data.batch_size=32", "train.amp=bf16"}, test_support::scratch_path("facet_gpu", "bf16"), -1);
  EXPECT_TRUE(r.probe->output_dtypes.count(torch::kBFloat16)) << "no output was computed in bfloat16: autocast was off";
  EXPECT_EQ(r.probe->skipped, 0);
  double first = 0, last = 0;
  for (int64_t s = 1; s <= 5; ++s) first += r.probe->losses.at(s) / 5;
  for (int64_t s = 56; s <= 60; ++s) last += r.probe->losses.at(s) / 5;
  EXPECT_LT(last, 0.85 * first) << "bf16 loss " << first << " -> " << last;
  std::printf("bf16 on %s: loss (mean of 5 steps) %.3f -> %.3f\n", device.str().c_str(), first, last);
}

TEST(GpuTraining, DropoutDrawsTheSameAfterAResume) {
  FACET_GPU_DEVICE(device);
  deterministic();
  const std::vector<std::string> overrides = {"train.max_steps=12", "train.checkpoint_every=3", "data.train_size=64",
                                              "data.batch_size=16", "model.dropout=0.5"};
  const Outcome a = train(device, overrides, test_support::scratch_path("facet_gpu", "rng_a"), -1);
  const Outcome b = train(device, overrides, test_support::scratch_path("facet_gpu", "rng_b"), -1);
  ASSERT_EQ(a.probe->losses, b.probe->losses) << "two uninterrupted runs on " << device << " differ";
  // Another seed draws other dropout masks: the losses depend on the random stream.
  auto reseeded = overrides;
  reseeded.push_back("seed=12345");
  const Outcome c = train(device, reseeded, test_support::scratch_path("facet_gpu", "rng_c"), -1);
  EXPECT_NE(c.probe->losses, a.probe->losses);
  const Outcome resumed = train(device, overrides, test_support::scratch_path("facet_gpu", "rng_resumed"), 8);
  ASSERT_FALSE(resumed.probe->losses.empty());
  EXPECT_EQ(resumed.probe->losses.begin()->first, 7) << "resumed from the step-6 checkpoint";
  for (const auto& [step, loss] : resumed.probe->losses)
    EXPECT_EQ(loss, a.probe->losses.at(step)) << "loss of step " << step << " after the resume";
  EXPECT_EQ(resumed.weights, a.weights);
}

TEST(GpuTraining, PinnedBatchesReachTheGpuByNonBlockingCopies) {
  FACET_GPU_DEVICE(device);
  Trainer t(shapes(device, {"train.max_steps=1", "data.train_size=64", "data.batch_size=16"}),
            test_support::scratch_path("facet_gpu", "pinned"));
  auto& loader = t.loader();
  EXPECT_EQ(loader.options().pin_memory, device.is_cuda()) << "the trainer's loader pins batches exactly for a GPU run";
  loader.start_epoch(0);
  int64_t batches = 0;
  while (auto batch = loader.next()) {
    ++batches;
    ASSERT_FALSE(batch->fields.empty());
    if (device.is_cuda()) {
      for (const auto& [key, cpu] : batch->fields) EXPECT_TRUE(cpu.is_pinned()) << key << " is not pinned";
    }
    const data::Batch moved = batch->to(device, /*non_blocking=*/true);
    gpu_test::sync(device);
    for (const auto& [key, cpu] : batch->fields) {
      const torch::Tensor& d = moved.fields.at(key);
      EXPECT_EQ(d.device(), device) << key;
      EXPECT_TRUE(torch::equal(d.cpu(), cpu)) << key << " changed on its way to " << device;
    }
  }
  EXPECT_EQ(batches, 4);
}

TEST(GpuTraining, BatchesCopiedAheadOnASideStreamTrainAsDirectCopies) {
  FACET_GPU_DEVICE(device);
  deterministic();
  const std::vector<std::string> ahead = {"train.max_steps=12", "train.checkpoint_every=3", "data.train_size=64",
                                          "data.batch_size=16", "model.dropout=0.2"};
  auto direct = ahead;
  direct.push_back("train.prefetch_to_device=false");
  {
    Trainer t(shapes(device, ahead), test_support::scratch_path("facet_gpu", "prefetch_probe"));
    EXPECT_TRUE(t.prefetcher().looks_ahead()) << "a run fetches one batch ahead by default";
  }
  const Outcome a = train(device, direct, test_support::scratch_path("facet_gpu", "prefetch_off"), -1);
  const Outcome b = train(device, ahead, test_support::scratch_path("facet_gpu", "prefetch_on"), -1);
  EXPECT_EQ(b.probe->losses, a.probe->losses) << "copying on a side stream changed what the steps computed";
  EXPECT_EQ(b.weights, a.weights);
  // Killed with a batch fetched ahead: the checkpoint's position is the last batch trained on.
  const Outcome resumed = train(device, ahead, test_support::scratch_path("facet_gpu", "prefetch_resumed"), 8);
  EXPECT_EQ(resumed.weights, a.weights) << "the resumed run (look-ahead on) ends with other weights";
}

TEST(GpuTraining, CudaGraphsTrainAsTheEagerStep) {
  FACET_GPU_DEVICE(device);
  if (!device.is_cuda()) GTEST_SKIP() << "CUDA graphs need a CUDA device (this is the CPU rehearsal)";
  deterministic();
  const std::vector<std::string> eager = {"train.max_steps=12", "train.checkpoint_every=3", "data.train_size=64",
                                          "data.batch_size=16", "model.dropout=0.2"};
  auto graphed = eager;
  graphed.push_back("train.cuda_graph=true");
  const Outcome a = train(device, eager, test_support::scratch_path("facet_gpu", "graph_off"), -1);
  const Outcome b = train(device, graphed, test_support::scratch_path("facet_gpu", "graph_on"), -1);
  ASSERT_EQ(a.probe->losses.size(), b.probe->losses.size());
  for (const auto& [step, loss] : a.probe->losses)
    EXPECT_NEAR(b.probe->losses.at(step), loss, 1e-4 * std::abs(loss)) << "loss of step " << step;
  // Resumed with graphs: the capture happens again in the new process and the run ends the same.
  const Outcome resumed = train(device, graphed, test_support::scratch_path("facet_gpu", "graph_resumed"), 8);
  for (const auto& [step, loss] : resumed.probe->losses)
    EXPECT_NEAR(loss, b.probe->losses.at(step), 1e-4 * std::abs(loss)) << "loss of step " << step << " after the resume";
}

}  // namespace
}  // namespace facet::train::test_training
