// End-to-end trainer tests: learning, exact resume after SIGTERM and kill -9, non-finite guards,
// and config errors. They drive the real `facet` binary where a process must die.
#include "core/config.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "tests/support/facet_process.h"
#include "tests/support/paths.h"
#include "train/checkpoint.h"
#include "train/cuda_graph.h"
#include "train/memory_format.h"
#include "train/trainer.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <opencv2/imgcodecs.hpp>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace facet::train::test_trainer {
namespace {

namespace fs = std::filesystem;
using test_support::spawn_facet;
using test_support::wait_for_exit;
using ::testing::AllOf;
using ::testing::HasSubstr;


fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_trainer", name); }

// A short demo-like experiment; `extra` are YAML overrides.
Config small_experiment(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"train.log_every=1000", "data.workers=2"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return Config::load(test_support::source_path("experiments/demo/shapes.yaml"), overrides);
}

std::string read_bytes(const fs::path& p) { return read_file(p); }

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
  const std::vector<std::string> common = {test_support::source_path("experiments/demo/shapes.yaml"), "train.max_steps=40",
                                           "train.checkpoint_every=4", "train.eval_every=20", "train.log_every=1000",
                                           "train.ema_decay=0.9", "model.dropout=0.2", "train.threads=1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train"};
    args.insert(args.end(), common.begin(), common.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const fs::path straight = fresh_dir("straight"), broken = fresh_dir("broken");
  ASSERT_EQ(wait_for_exit(spawn_facet(with({"--run-dir", straight.string()}), {}, straight.string() + ".log")), 0);

  // 1. SIGTERM once a checkpoint exists: the run saves and exits with 128 + SIGTERM.
  pid_t pid = spawn_facet(with({"--run-dir", broken.string()}), {}, broken.string() + ".1.log");
  ASSERT_TRUE(wait_for_step(broken, pid, 8)) << read_file(broken.string() + ".1.log");
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(pid), 128 + SIGTERM) << read_file(broken.string() + ".1.log");
  const int64_t stopped_at = last_step(broken);
  EXPECT_GE(stopped_at, 8);
  EXPECT_THAT(read_file(broken.string() + ".1.log"), HasSubstr("resume with: facet train --resume"));

  // 2. Resume, then kill -9 mid-run: no chance to save anything.
  pid = spawn_facet({"train", "--resume", broken.string()}, {}, broken.string() + ".2.log");
  ASSERT_TRUE(wait_for_step(broken, pid, stopped_at + 8)) << read_file(broken.string() + ".2.log");
  ::kill(pid, SIGKILL);
  wait_for_exit(pid);

  // 3. Resume to the end.
  ASSERT_EQ(wait_for_exit(spawn_facet({"train", "--resume", broken.string()}, {}, broken.string() + ".3.log")), 0)
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
    EXPECT_GT(trainer.state().skipped_steps, 0);
  }
}

// Two micro-batches of 8 accumulate to the same update as one batch of 16, with plain SGD (which,
// unlike Adam, would show a wrong gradient scale), over an epoch boundary and with random flips (no
// batch norm or dropout: the batch statistics and the masks of one batch of 16 cannot be those of
// two batches of 8; Distributed.TwoRanksMatchOneRankWithAccumulation covers them).
TEST(Trainer, GradientAccumulationEqualsTheLargerBatch) {
  const std::vector<std::string> common = {"model.batch_norm=false", "model.dropout=0.0", "train.max_steps=8",
                                           "train.eval_every=0", "data.train_size=80", "optim.name=sgd",
                                           "optim.momentum=0.9", "optim.lr=0.05", "train.threads=1"};
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

TEST(MemoryFormat, OnlyFourDimensionalTensorsAndFloatingFieldsTurnNhwc) {
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::BatchNorm2d(4),
                            torch::nn::Linear(4, 2));
  const torch::Tensor conv_weight = net->parameters()[0];
  use_channels_last(*net);
  EXPECT_TRUE(conv_weight.is_contiguous(torch::MemoryFormat::ChannelsLast)) << "the same tensor, converted in place";
  EXPECT_FALSE(conv_weight.is_contiguous());
  for (const auto& p : net->parameters()) {
    if (p.dim() != 4) {
      EXPECT_TRUE(p.is_contiguous());
    }
  }
  data::Batch b;
  b.fields["image"] = torch::rand({2, 3, 5, 5});
  b.fields["mask"] = torch::zeros({2, 1, 5, 5}, torch::kUInt8);
  b.fields["label"] = torch::zeros({2});
  batch_to_channels_last(b);
  EXPECT_TRUE(b.fields.at("image").is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_FALSE(b.fields.at("image").is_contiguous());
  EXPECT_TRUE(b.fields.at("mask").is_contiguous()) << "integer fields (masks, ids) keep their layout";
}

// train.channels_last changes the memory order, not the arithmetic: the same 8 steps end with the
// same weights (to float rounding), and the convolution weights are NHWC throughout.
TEST(Trainer, ChannelsLastTrainsTheSameWeights) {
  auto run = [&](const std::string& name, bool channels_last) {
    Trainer t(small_experiment({"train.max_steps=8", "train.eval_every=0", "data.train_size=64", "train.threads=1",
                                fmt::format("train.channels_last={}", channels_last)}),
              fresh_dir(name), Mode::train);
    t.fit();
    // (The first convolution has one input channel: its weight is both NCHW and NHWC.)
    int64_t nhwc = 0, nchw = 0;
    for (const auto& p : t.model().parameters())
      if (p.dim() == 4) {
        nhwc += p.is_contiguous(torch::MemoryFormat::ChannelsLast);
        nchw += p.is_contiguous();
      }
    return std::make_tuple(safetensors::state_dict(t.model()), nhwc, nchw);
  };
  const auto [nchw, nchw_run_nhwc, nchw_run_nchw] = run("memory_nchw", false);
  const auto [nhwc, nhwc_run_nhwc, nhwc_run_nchw] = run("memory_nhwc", true);
  EXPECT_EQ(nchw_run_nchw, 3) << "simple_cnn has three convolutions";
  EXPECT_EQ(nchw_run_nhwc, 1);
  EXPECT_EQ(nhwc_run_nhwc, 3);
  EXPECT_EQ(nhwc_run_nchw, 1);
  for (const auto& [name, t] : nchw) EXPECT_TRUE(torch::allclose(t, nhwc.at(name), 1e-4, 1e-5)) << name;
}

TEST(Trainer, LookingOneBatchAheadTrainsTheSameWeights) {
  // 12 steps of 16 over 64 samples: three epoch boundaries with a batch fetched ahead at each.
  auto run = [&](const std::string& name, bool ahead) {
    Trainer t(small_experiment({"train.max_steps=12", "train.eval_every=0", "data.train_size=64", "data.batch_size=16",
                                "train.threads=1", fmt::format("train.prefetch_to_device={}", ahead)}),
              fresh_dir(name), Mode::train);
    EXPECT_EQ(t.prefetcher().looks_ahead(), ahead);
    t.fit();
    return safetensors::state_dict(t.model());
  };
  const auto direct = run("ahead_off", false), ahead = run("ahead_on", true);
  for (const auto& [name, t] : direct) EXPECT_TRUE(torch::equal(t, ahead.at(name))) << name;
}

TEST(Trainer, CudaGraphsAreRefusedOffTheGpu) {
  try {
    Trainer t(small_experiment({"train.cuda_graph=true", "train.device=cpu"}), fresh_dir("graph_cpu"), Mode::check);
    ADD_FAILURE() << "train.cuda_graph on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.cuda_graph: CUDA graphs need a CUDA device, and this run is on cpu"));
  }
  // The class itself refuses inputs that are not on a CUDA device, before touching CUDA.
  GraphedFunction graphed([](const TensorDict& in) { return TensorDict{{"y", in.at("x") * 2}}; }, {}, nullptr);
  try {
    graphed(TensorDict{{"x", torch::ones({2})}});
    ADD_FAILURE() << "a graph of CPU inputs was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("input \"x\" is on cpu; a CUDA graph needs every input on one CUDA device"));
  }
  EXPECT_FALSE(graphed.captured());
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

// Early stopping counts on across a resume, and a run it stopped stays stopped.
TEST(Trainer, EarlyStoppingStateSurvivesAResume) {
  const fs::path run = fresh_dir("early_resume");
  const std::vector<std::string> base = {"train.eval_every=5", "optim.lr=1e-9", "schedule.warmup_steps=0"};
  const std::string hooks = "[{name: early_stopping, metric: val/accuracy, patience: 2, min_delta: 0.5}]";
  auto experiment = [&](int64_t max_steps) {
    std::vector<std::string> o = base;
    o.push_back(fmt::format("train.max_steps={}", max_steps));
    Config c = small_experiment(o);
    c.set("hooks", hooks);
    return c;
  };
  {
    Trainer t(experiment(10), run, Mode::train);  // evaluations at 5 (best) and 10 (one without improvement)
    EXPECT_EQ(t.fit().step, 10);
  }
  {
    Trainer t(experiment(200), run, Mode::resume);
    const RunResult r = t.fit();
    EXPECT_EQ(r.step, 15) << "the second evaluation without improvement is at 15, as in an uninterrupted run";
    EXPECT_THAT(r.stopped_early, HasSubstr("early stopping at step 15"));
  }
  Trainer t(experiment(200), run, Mode::resume);
  const RunResult r = t.fit();
  EXPECT_EQ(r.step, 15);
  EXPECT_THAT(r.stopped_early, HasSubstr("early stopping at step 15"));
  EXPECT_EQ(last_step(run), 15);
}

// Saving a step that is already on disk replaces it whole, and `last` never points at nothing.
TEST(Checkpoints, SavingTheSameStepAgainReplacesItAndKeepsTheLinks) {
  const fs::path dir = fresh_dir("resave");
  CheckpointDir checkpoints(dir, 2);
  auto param = torch::zeros({2}).requires_grad_();
  torch::optim::SGD sgd({param}, torch::optim::SGDOptions(0.1));
  CheckpointContents c;
  c.model["w"] = torch::zeros({2});
  c.files["trainer.safetensors"]["scale"] = torch::zeros({1});
  c.optimizers["main"] = &sgd;
  c.state = {{"step", 7}, {"epoch", 0}};
  checkpoints.save(7, c, /*is_best=*/true);
  c.model["w"] = torch::ones({2});
  c.state["epoch"] = 1;
  const fs::path again = checkpoints.save(7, c, /*is_best=*/false);
  EXPECT_EQ(checkpoints.resolve("last"), again);
  EXPECT_EQ(checkpoints.resolve("best"), again);
  const CheckpointContents loaded = CheckpointDir::load(again);
  EXPECT_TRUE(torch::equal(loaded.model.at("w"), torch::ones({2})));
  EXPECT_EQ(loaded.state.at("epoch"), 1);
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_NE(entry.path().filename().string().rfind(".tmp.", 0), 0u) << "left behind: " << entry.path();
  // keep_last prunes the oldest steps but never the ones `last` and `best` point at.
  for (int64_t step : {8, 9, 10}) checkpoints.save(step, c, false);
  EXPECT_TRUE(fs::exists(dir / "step_00000007")) << "best";
  EXPECT_FALSE(fs::exists(dir / "step_00000008"));
  EXPECT_TRUE(fs::exists(dir / "step_00000009"));
  EXPECT_TRUE(fs::exists(dir / "step_00000010"));
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
  EXPECT_THAT(test_support::message_of([] { Trainer t(small_experiment({"train.keep_last=0"}), fresh_dir("keep"), Mode::train); }),
              HasSubstr("train.keep_last: expected >= 1, got 0"));
}

// data.test_split: evaluated once after fit() with the weights of the best checkpoint, which need
// not be the last ones; refused when it names the evaluation split.
TEST(Trainer, TestSplitUsesTheBestCheckpoint) {
  EXPECT_THAT(test_support::message_of([] { Trainer t(small_experiment({"data.test_split=val"}), fresh_dir("test_val"), Mode::train); }),
              HasSubstr("data.test_split is the evaluation split \"val\""));
  const fs::path run = fresh_dir("test_split");
  // best_mode min on accuracy: the first evaluation (step 5, before the model has learnt) is best.
  Trainer t(small_experiment({"train.max_steps=20", "train.eval_every=4", "data.eval_size=200", "data.test_split=test", "train.best_mode=min",
                              "train.keep_last=20"}),
            run, Mode::train);
  t.fit();
  const EvalResults tested = t.test();
  ASSERT_TRUE(tested.count("test/accuracy"));
  // The best checkpoint is an early one; its weights, evaluated on the same images (the synthetic
  // set draws every non-training split alike), give its recorded validation accuracy.
  const int64_t best = nlohmann::json::parse(read_file(run / "checkpoints" / "best" / "state.json")).at("step").get<int64_t>();
  EXPECT_LT(best, 20);
  double recorded = -1;
  std::istringstream csv(read_file(run / "metrics.csv"));
  for (std::string line; std::getline(csv, line);)
    if (line.rfind(std::to_string(best) + ",", 0) == 0 && line.find(",val/accuracy,") != std::string::npos)
      recorded = std::stod(line.substr(line.rfind(',') + 1));
  EXPECT_NEAR(tested.at("test/accuracy"), recorded, 1e-6);
  EXPECT_GT(t.last_eval().at("val/accuracy"), tested.at("test/accuracy"));
}

// Without a best checkpoint the test split is evaluated with the last step's weights as every
// evaluation sees them: the EMA's, when the run keeps one.
TEST(Trainer, TestSplitWithoutABestCheckpointUsesTheEmaWeights) {
  const fs::path run = fresh_dir("test_ema");
  Trainer t(small_experiment({"train.max_steps=6", "train.eval_every=3", "train.ema_decay=0.9", "data.eval_size=200",
                              "data.test_split=test", R"(train.best_metric="")"}),
            run, Mode::train);
  t.fit();
  const EvalResults tested = t.test();
  const auto ema = safetensors::load(run / "checkpoints/last/ema.safetensors");
  for (const auto& [name, tensor] : safetensors::state_dict(t.model())) {
    if (ema.count(name)) {
      EXPECT_TRUE(torch::equal(tensor, ema.at(name))) << name << " is not the EMA's";
    }
  }
  // The synthetic set draws every non-training split alike: the same images, the same weights.
  EXPECT_DOUBLE_EQ(tested.at("test/accuracy"), t.last_eval().at("val/accuracy"));
}

// A metric that is not a number (an F1 over no positive label) is never the best and never an
// improvement; the state files, in JSON, which has no NaN, still read back.
TEST(Trainer, ANotANumberMetricIsNeverTheBest) {
  const fs::path run = fresh_dir("nan_best");
  const auto config = [](int64_t steps) {
    return small_experiment({R"(metrics=[{name: toy_scripted, values: ["nan", "0.5", "0.25", "nan"]}])",
                             "train.best_metric=val/value", "train.eval_every=2", "train.keep_last=5", "data.eval_size=64",
                             fmt::format("train.max_steps={}", steps)});
  };
  const auto state_of = [&](const std::string& link) {
    return nlohmann::json::parse(read_file(run / "checkpoints" / link / "state.json"));
  };
  {
    Trainer t(config(6), run, Mode::train);
    t.fit();
  }
  EXPECT_EQ(state_of("best").at("step").get<int64_t>(), 4);
  EXPECT_DOUBLE_EQ(state_of("last").at("best").get<double>(), 0.5);
  {
    Trainer t(config(8), run, Mode::resume);  // its evaluation at step 8 gives NaN
    t.fit();
    EXPECT_TRUE(std::isnan(t.last_eval().at("val/value")));
  }
  EXPECT_EQ(state_of("best").at("step").get<int64_t>(), 4);
  EXPECT_TRUE(state_of("last").at("last_eval").at("val/value").is_null());
  // Early stopping counts NaN evaluations as no improvement, and says so.
  Trainer s(small_experiment({R"(metrics=[{name: toy_scripted, values: ["nan"]}])", R"(train.best_metric="")",
                              "train.eval_every=2", "train.max_steps=20", "data.eval_size=64",
                              "hooks=[{name: early_stopping, metric: val/value, patience: 2}]"}),
            fresh_dir("nan_early_stop"), Mode::train);
  const RunResult r = s.fit();
  EXPECT_EQ(r.step, 4);
  EXPECT_THAT(r.stopped_early, HasSubstr("val/value has not been a finite number for 2 evaluations"));
}

// A train.best_metric or hook naming a result the evaluation does not report fails when the run is
// built, with the key and the nearest result, not at the first evaluation hours later.
TEST(Trainer, AMisnamedResultIsRefusedBeforeTraining) {
  const auto message = [](const std::vector<std::string>& o) {
    return test_support::message_of([&] { Trainer t(small_experiment(o), fresh_dir("misnamed"), Mode::check); });
  };
  EXPECT_THAT(message({"train.best_metric=val/acuracy"}),
              AllOf(HasSubstr("train.best_metric: \"val/acuracy\" is not among the results of the evaluation on \"val\" ("),
                    HasSubstr("val/accuracy"), HasSubstr("did you mean val/accuracy?")));
  EXPECT_THAT(message({"hooks=[{name: early_stopping, metric: val/macro-f1}]"}),
              AllOf(HasSubstr("hooks[0].metric: \"val/macro-f1\" is not among the results"),
                    HasSubstr("did you mean val/macro_f1?")));
  EXPECT_EQ(message({"hooks=[{name: early_stopping, metric: val/macro_f1}]"}), "(no error)");
}

TEST(Trainer, ResumeChecksTheEmaWeightsAgainstTheModel) {
  const fs::path run = fresh_dir("ema");
  {
    Trainer t(small_experiment({"train.max_steps=2", "train.eval_every=0", "train.ema_decay=0.9"}), run, Mode::train);
    t.fit();
  }
  const fs::path ema = fs::read_symlink(run / "checkpoints" / "last");
  const fs::path file = run / "checkpoints" / ema / "ema.safetensors";
  safetensors::TensorMap weights = safetensors::load(file);
  const std::string first = weights.begin()->first;
  weights[first] = torch::zeros({3});
  safetensors::save(file, weights);
  EXPECT_THAT(test_support::message_of([&] {
                Trainer t(small_experiment({"train.max_steps=4", "train.eval_every=0", "train.ema_decay=0.9"}), run, Mode::resume);
              }),
              AllOf(HasSubstr(file.string()), HasSubstr("EMA tensor \"" + first + "\" is [3], the model's is")));
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
    EXPECT_THAT(e.what(), HasSubstr("model.widths[0]: 16 -> 8"));
  }
}

}  // namespace
}  // namespace facet::train::test_trainer
