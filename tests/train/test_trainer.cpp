// End-to-end trainer tests: learning, exact resume after SIGTERM and kill -9, non-finite guards,
// and config errors. They drive the real `facet` binary where a process must die.
#include "core/config.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "train/trainer.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <opencv2/imgcodecs.hpp>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace facet::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kFacet = FACET_BINARY_DIR "/tools/cli/facet";

fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_trainer", name); }

// A short demo-like experiment; `extra` are YAML overrides.
Config small_experiment(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"train.log_every=1000", "data.workers=2"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return Config::load(FACET_SOURCE_DIR "/experiments/demo/shapes.yaml", overrides);
}

std::string read_bytes(const fs::path& p) { return read_file(p); }

// Runs `facet` with `args`; returns the child's pid (not waited for).
pid_t spawn_facet(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "w", stderr);
    (void)out;
    std::vector<char*> argv{const_cast<char*>(kFacet.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kFacet.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Step of the checkpoint `last` points at, or -1.
int64_t last_step(const fs::path& run) {
  std::error_code ec;
  const auto target = fs::read_symlink(run / "checkpoints" / "last", ec);
  if (ec) return -1;
  return std::stoll(target.filename().string().substr(5));
}

// Polls until the run in `run` has checkpointed `step` or later; false if the child exited first
// or two minutes passed.
bool wait_for_step(const fs::path& run, pid_t pid, int64_t step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (last_step(run) < step) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

TEST(Trainer, LearnsTheSyntheticShapesFarAboveChance) {
  const fs::path run = fresh_dir("learns");
  Trainer trainer(small_experiment({"train.max_steps=150", "train.eval_every=150", "train.log_images=5"}), run,
                  Mode::train);
  const RunResult result = trainer.fit();
  EXPECT_EQ(result.step, 150);
  EXPECT_GT(result.last_eval.at("val/accuracy"), 0.8) << "chance is 0.25";
  EXPECT_TRUE(fs::exists(run / "config.yaml"));
  EXPECT_TRUE(fs::exists(run / "log.txt"));
  EXPECT_THAT(read_file(run / "metrics.csv"), HasSubstr("150,"));
  EXPECT_EQ(last_step(run), 150);
  std::string events;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().find("tfevents") != std::string::npos) events = read_file(e.path());
  EXPECT_THAT(events, HasSubstr("val/inputs"));  // the image grid went to TensorBoard too
  // Five 32x32 grey inputs in one row, 2 px apart.
  const cv::Mat grid = cv::imread((run / "visuals/val_inputs_step150.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(grid.empty());
  EXPECT_EQ(grid.rows, 32 + 4);
  EXPECT_EQ(grid.cols, 5 * 34 + 2);
  EXPECT_EQ(grid.channels(), 1);
}

TEST(Trainer, OverfitsOneBatch) {
  const fs::path run = fresh_dir("overfit");
  Trainer trainer(small_experiment({"data.train_size=16", "data.batch_size=16", "data.augment_flip=false",
                                    "train.max_steps=120", "loss.label_smoothing=0.0", "optim.lr=0.01",
                                    "optim.weight_decay=0.0", "schedule.name=constant", "schedule.warmup_steps=0",
                                    "train.eval_every=0", "data.eval_size=16"}),
                  run, Mode::train);
  trainer.fit();
  const std::string csv = read_file(run / "metrics.csv");
  // The last logged training loss must be near zero.
  const auto pos = csv.rfind(",train/loss,");
  ASSERT_NE(pos, std::string::npos);
  const double loss = std::stod(csv.substr(pos + 12));
  EXPECT_LT(loss, 0.05);
}

// An uninterrupted run and a run killed (SIGTERM, then kill -9) and resumed end bit-identical.
TEST(Trainer, ResumeAfterSigtermAndKillIsBitIdentical) {
  const std::vector<std::string> common = {FACET_SOURCE_DIR "/experiments/demo/shapes.yaml", "train.max_steps=40",
                                           "train.checkpoint_every=4", "train.eval_every=20", "train.log_every=1000",
                                           "train.ema_decay=0.9", "model.dropout=0.2", "train.threads=1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train"};
    args.insert(args.end(), common.begin(), common.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const fs::path straight = fresh_dir("straight"), broken = fresh_dir("broken");
  ASSERT_EQ(wait_exit(spawn_facet(with({"--run-dir", straight.string()}), straight.string() + ".log")), 0);

  // 1. SIGTERM once a checkpoint exists: the run saves and exits with 128 + SIGTERM.
  pid_t pid = spawn_facet(with({"--run-dir", broken.string()}), broken.string() + ".1.log");
  ASSERT_TRUE(wait_for_step(broken, pid, 8)) << read_file(broken.string() + ".1.log");
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 128 + SIGTERM) << read_file(broken.string() + ".1.log");
  const int64_t stopped_at = last_step(broken);
  EXPECT_GE(stopped_at, 8);
  EXPECT_THAT(read_file(broken.string() + ".1.log"), HasSubstr("resume with: facet train --resume"));

  // 2. Resume, then kill -9 mid-run: no chance to save anything.
  pid = spawn_facet({"train", "--resume", broken.string()}, broken.string() + ".2.log");
  ASSERT_TRUE(wait_for_step(broken, pid, stopped_at + 8)) << read_file(broken.string() + ".2.log");
  ::kill(pid, SIGKILL);
  wait_exit(pid);

  // 3. Resume to the end.
  ASSERT_EQ(wait_exit(spawn_facet({"train", "--resume", broken.string()}, broken.string() + ".3.log")), 0)
      << read_file(broken.string() + ".3.log");
  EXPECT_EQ(last_step(broken), 40);
  EXPECT_EQ(read_bytes(straight / "checkpoints/last/model.safetensors"),
            read_bytes(broken / "checkpoints/last/model.safetensors"))
      << "weights differ after resume";
  EXPECT_EQ(read_bytes(straight / "checkpoints/last/ema.safetensors"),
            read_bytes(broken / "checkpoints/last/ema.safetensors"));
}

TEST(Trainer, NonFiniteLossIsSkippedOrStopsWithADiagnosis) {
  // A learning rate this large makes the loss overflow within a few steps.
  const std::vector<std::string> blow_up = {"optim.lr=1e30", "schedule.warmup_steps=0", "train.max_steps=6",
                                            "train.clip_norm=0", "train.eval_every=0", "optim.name=sgd",
                                            "optim.weight_decay=0"};
  {
    auto overrides = blow_up;
    overrides.push_back("train.non_finite=stop");
    Trainer trainer(small_experiment(overrides), fresh_dir("nan_stop"), Mode::train);
    try {
      trainer.fit();
      FAIL() << "expected a non-finite diagnosis";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("non-finite"));
      EXPECT_THAT(e.what(), HasSubstr("train.non_finite: skip"));
    }
  }
  {
    Trainer trainer(small_experiment(blow_up), fresh_dir("nan_skip"), Mode::train);
    EXPECT_NO_THROW(trainer.fit());
  }
}

// Two micro-batches of 8 accumulate to the same update as one batch of 16 (no batch norm, so the
// batch statistics cannot differ).
TEST(Trainer, GradientAccumulationEqualsTheLargerBatch) {
  const std::vector<std::string> common = {"model.batch_norm=false", "model.dropout=0.0", "train.max_steps=6",
                                           "train.eval_every=0", "data.augment_flip=false", "train.threads=1"};
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    Trainer t(small_experiment(extra), fresh_dir(name), Mode::train);
    t.fit();
    return safetensors::state_dict(t.model());
  };
  const auto big = run("accum_big", {"data.batch_size=16"});
  const auto accumulated = run("accum_small", {"data.batch_size=8", "train.grad_accum=2", "data.workers=0"});
  for (const auto& [name, t] : big) EXPECT_TRUE(torch::allclose(t, accumulated.at(name), 1e-5, 1e-6)) << name;
}

TEST(Trainer, Bf16AutocastOnCpuTrains) {
  const fs::path run = fresh_dir("bf16");
  Trainer trainer(small_experiment({"train.amp=bf16", "train.max_steps=80", "train.eval_every=80"}), run, Mode::train);
  const RunResult result = trainer.fit();
  EXPECT_GT(result.last_eval.at("val/accuracy"), 0.5) << "chance is 0.25";
}

TEST(Trainer, EarlyStoppingHookEndsTheRun) {
  Config c = small_experiment({"train.max_steps=200", "train.eval_every=5", "optim.lr=1e-9", "schedule.warmup_steps=0"});
  c.set("hooks", "[{name: early_stopping, metric: val/accuracy, patience: 2, min_delta: 0.5}]");
  Trainer trainer(std::move(c), fresh_dir("early"), Mode::train);
  const RunResult result = trainer.fit();
  EXPECT_EQ(result.step, 15) << "evaluations at 5 (best), 10 and 15 (two without improvement)";
  EXPECT_THAT(result.stopped_early, HasSubstr("early stopping at step 15"));
}

TEST(Trainer, ConfigErrorsNameTheKey) {
  try {
    Trainer t(small_experiment({"model.name=simple_cnm"}), fresh_dir("bad_model"), Mode::train);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.name: unknown model \"simple_cnm\" (did you mean \"simple_cnn\"?)"));
  }
  try {
    Trainer t(small_experiment({"train.max_step=10"}), fresh_dir("typo"), Mode::train);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.max_step"));
    EXPECT_THAT(e.what(), HasSubstr("train.max_steps"));
  }
}

TEST(Trainer, ResumeRejectsACheckpointOfAnotherModel) {
  const fs::path run = fresh_dir("other_model");
  {
    Trainer t(small_experiment({"train.max_steps=2", "train.eval_every=0"}), run, Mode::train);
    t.fit();
  }
  try {
    Trainer t(small_experiment({"train.max_steps=4", "model.widths=[8,16]"}), run, Mode::resume);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("different `model` config"));
  }
}

}  // namespace
}  // namespace facet::train
