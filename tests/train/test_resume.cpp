// Data is precious: a kill at every step of the checkpoint protocol leaves a complete checkpoint to
// resume from, and the resumed run ends bit-identical; a resume with another setup is refused with
// the differing keys; metrics.csv and TensorBoard rows are not doubled by a crash and resume; bad
// options, bad samples and bad configs fail early and clearly; ranks stay in step when one of them
// loses a whole micro-batch.
#include "core/file_io.h"
#include "core/safetensors.h"
#include "tests/support/facet_process.h"
#include "tests/support/paths.h"
#include "tests/support/ranks.h"
#include "tests/support/scratch.h"
#include "tests/train/toys.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <set>

namespace facet::train::test_resume {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using test_support::run_facet;


fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_resume", name); }

// Rows of metrics.csv that repeat an earlier row's (step, name).
size_t duplicate_rows(const std::string& csv) {
  std::set<std::string> rows;
  size_t at = 0, duplicates = 0;
  while (at < csv.size()) {
    const size_t end = std::min(csv.find('\n', at), csv.size());
    const std::string line = csv.substr(at, end - at);
    const size_t second = line.find(',', line.find(',') + 1), third = line.find(',', second + 1);
    if (!rows.insert(line.substr(0, line.find(',')) + line.substr(second, third - second)).second) ++duplicates;
    at = end + 1;
  }
  return duplicates;
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// A kill inside the n-th checkpoint save, at each stage of the protocol, then a resume: the run ends
// with the weights of a run that was never interrupted. The run accumulates gradients over an epoch
// boundary, with random flips and fp16 autocast with its scaler.
TEST(Resume, KillDuringACheckpointWriteAtEveryStageResumesExactly) {
  const std::vector<std::string> train = {"train", test_support::source_path("experiments/demo/shapes.yaml"), "train.max_steps=12",
                                          "train.checkpoint_every=2", "train.eval_every=0", "data.train_size=96", "data.eval_size=32",
                                          "data.batch_size=16", "train.grad_accum=2", "train.amp=fp16",
                                          "model.dropout=0.2", "train.log_every=1", "train.threads=1"};
  auto with = [&](const fs::path& run) {
    auto a = train;
    a.insert(a.end(), {"--run-dir", run.string()});
    return a;
  };
  const fs::path straight = fresh_dir("straight");
  ASSERT_EQ(run_facet(with(straight), {}, straight.string() + ".log"), 0) << read_file(straight.string() + ".log");
  const std::string expected = read_file(straight / "checkpoints/last/model.safetensors");
  struct Case {
    std::string stage;
    bool exchange;
  };
  // Killed in the 4th save. (`swap` needs a step saved twice, which a run no longer does;
  // Resume.CheckpointSaveKilledAtEveryStageLeavesACompleteCheckpoint covers it.)
  for (const Case& c : {Case{"files", true}, Case{"state", true}, Case{"link", true}, Case{"link", false}}) {
    const std::string name = c.stage + (c.exchange ? "" : "_no_exchange");
    const fs::path run = fresh_dir("fault_" + name);
    std::map<std::string, std::string> env = {{"FACET_CHECKPOINT_FAULT", c.stage + ":4"}};
    if (!c.exchange) env["FACET_CHECKPOINT_NO_EXCHANGE"] = "1";
    EXPECT_EQ(run_facet(with(run), env, run.string() + ".1.log"), kCheckpointFaultExitCode) << name;
    const auto latest = CheckpointDir(run / "checkpoints").latest_complete();
    ASSERT_TRUE(latest.has_value()) << name << ": no complete checkpoint left";
    ASSERT_EQ(run_facet({"train", "--resume", run.string()}, {}, run.string() + ".2.log"), 0)
        << name << ": " << read_file(run.string() + ".2.log");
    EXPECT_EQ(read_file(run / "checkpoints/last/model.safetensors"), expected) << name << ": weights differ after the resume";
    // metrics.csv holds each (step, name) once, whatever was written before the kill.
    EXPECT_EQ(duplicate_rows(read_file(run / "metrics.csv")), 0u) << name;
  }
}

// The protocol itself, killed at each stage by a forked child: the newest complete checkpoint is
// always the old or the new one, never missing, and the next save cleans up what the kill left.
TEST(Resume, CheckpointSaveKilledAtEveryStageLeavesACompleteCheckpoint) {
  for (const bool exchange : {true, false})
    for (const std::string stage : {"files", "state", "swap", "link"}) {
      const fs::path dir = fresh_dir("protocol_" + stage + (exchange ? "" : "_nx"));
      auto param = torch::zeros({2}).requires_grad_();
      torch::optim::SGD sgd({param}, torch::optim::SGDOptions(0.1));
      auto contents = [&](float v) {
        CheckpointContents c;
        c.model["w"] = torch::full({2}, v);
        c.optimizers["main"] = &sgd;
        c.state = {{"step", 6}, {"value", v}};
        return c;
      };
      CheckpointDir checkpoints(dir, 2);
      checkpoints.save(5, contents(5), false);
      checkpoints.save(6, contents(6), false);
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::setenv("FACET_CHECKPOINT_FAULT", stage.c_str(), 1);
        if (!exchange) ::setenv("FACET_CHECKPOINT_NO_EXCHANGE", "1", 1);
        try {
          CheckpointDir(dir, 2).save(6, contents(7), false);  // the same step again: `swap` applies
        } catch (...) {
        }
        ::_exit(0);
      }
      int status = 0;
      ::waitpid(pid, &status, 0);
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), kCheckpointFaultExitCode) << stage;
      const auto latest = checkpoints.latest_complete();
      ASSERT_TRUE(latest.has_value()) << stage;
      const float value = CheckpointDir::load(*latest).model.at("w")[0].item<float>();
      EXPECT_TRUE(value == 6 || value == 7) << stage << ": " << value;
      EXPECT_EQ(latest->filename().string().substr(0, 13), "step_00000006") << stage;
      checkpoints.save(8, contents(8), false);
      for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        EXPECT_EQ(name.find(".tmp."), std::string::npos) << stage << ": left behind " << name;
        EXPECT_EQ(name.find(".old"), std::string::npos) << stage << ": left behind " << name;
      }
    }
}

// Killed after writing a checkpoint and before linking it: the resume continues from it and points
// `last`, and `best` when it was saved as the best, at it.
TEST(Resume, RelinkPointsTheLinksAtTheCheckpointResumedFrom) {
  const fs::path dir = fresh_dir("relink");
  CheckpointContents contents;
  contents.model["w"] = torch::zeros({1});
  CheckpointDir checkpoints(dir, 5);
  checkpoints.save(2, contents, true);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("FACET_CHECKPOINT_FAULT", "link", 1);
    try {
      CheckpointDir(dir, 5).save(4, contents, true);
    } catch (...) {
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kCheckpointFaultExitCode);
  const fs::path step2 = dir / "step_00000002", step4 = dir / "step_00000004";
  ASSERT_EQ(checkpoints.latest_complete(), step4);
  EXPECT_EQ(checkpoints.resolve("last"), step2);
  EXPECT_EQ(checkpoints.resolve("best"), step2);
  checkpoints.relink(step4, true);
  EXPECT_EQ(checkpoints.resolve("last"), step4);
  EXPECT_EQ(checkpoints.resolve("best"), step4);
  checkpoints.relink(step2, false);
  EXPECT_EQ(checkpoints.resolve("last"), step2);
  EXPECT_EQ(checkpoints.resolve("best"), step4) << "only a checkpoint saved as the best moves `best`";
}

TEST(Resume, AnotherSetupIsRefusedWithTheDifferingKeys) {
  const fs::path run = fresh_dir("setup");
  {
    Trainer t(toys::shapes_experiment({"train.max_steps=2", "train.eval_every=0"}), run);
    t.fit();
  }
  EXPECT_THAT(test_support::message_of([&] {
                Trainer t(toys::shapes_experiment({"train.max_steps=4", "data.batch_size=16", "data.noise=0.1",
                                                   "train.eval_every=0"}),
                          run, Mode::resume);
              }),
              AllOf(HasSubstr("cannot resume exactly with a different setup"), HasSubstr("data.batch_size: 32 -> 16"),
                    HasSubstr("data.noise: 0.35 -> 0.1"), Not(HasSubstr("train.max_steps"))));
  EXPECT_THAT(test_support::message_of([&] {
                Trainer t(toys::shapes_experiment({"train.max_steps=4", "model.widths=[8,16]", "train.eval_every=0"}), run,
                          Mode::resume);
              }),
              HasSubstr("model.widths[0]: 16 -> 8"));
  // Another world size: the checkpoint records 1 rank; pretend it recorded 2.
  const fs::path state = fs::canonical(run / "checkpoints/last") / "state.json";
  auto j = nlohmann::json::parse(read_file(state));
  j["world_size"] = 2;
  write_file_atomic(state, j.dump());
  EXPECT_THAT(test_support::message_of([&] {
                Trainer t(toys::shapes_experiment({"train.max_steps=4", "train.eval_every=0"}), run, Mode::resume);
              }),
              HasSubstr("world size: 2 -> 1"));
  j["world_size"] = 1;
  write_file_atomic(state, j.dump());
  // A longer run is allowed.
  Trainer t(toys::shapes_experiment({"train.max_steps=4", "train.eval_every=0"}), run, Mode::resume);
  EXPECT_EQ(t.fit().step, 4);
}

// TensorBoard shows each step once after a crash and resume: the resumed run writes a SessionLog
// START at its restart step, which TensorBoard's reader uses to drop the older files' later events.
TEST(Resume, TensorBoardDropsTheEventsOfTheCrashedStretch) {
  const fs::path run = fresh_dir("events");
  const auto config = [] {
    Config c = toys::shapes_experiment({"train.max_steps=10", "train.eval_every=0", "train.checkpoint_every=5",
                                        "train.log_every=1"});
    c.set("hooks", "[{name: recording, label: crash, priority: 95, crash_at_step: 7}]");
    return c;
  };
  {
    Trainer t(config(), run);
    EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr("toy crash at step 7"));
  }
  {
    Trainer t(config(), run, Mode::resume);
    t.fit();
  }
  const fs::path script = run / "read_events.py";
  write_file_atomic(script,
                    "import sys\n"
                    "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
                    "acc = EventAccumulator(sys.argv[1]); acc.Reload()\n"
                    "steps = [e.step for e in acc.Scalars('train/loss')]\n"
                    "print('steps', steps)\n"
                    "sys.exit(0 if steps == sorted(set(steps)) and steps[-1] == 10 else 1)\n");
  const std::string command = fmt::format("{} {} {} > {} 2>&1", test_support::kPython, script.string(), run.string(),
                                          (run / "events.txt").string());
  EXPECT_EQ(std::system(command.c_str()), 0) << read_file(run / "events.txt");
}

// The evaluation at an epoch's end (eval_every 0) comes after that step's checkpoint and is run
// again by a resume from it: its rows stay in metrics.csv once.
TEST(Resume, RowsLoggedAfterTheCheckpointOfTheirStepAreNotDoubled) {
  const fs::path run = fresh_dir("rows");
  const auto config = [] {
    // 64 samples in batches of 16: epoch 0 ends at step 4, checkpointed, then evaluated; the crash at step 5.
    Config c = toys::shapes_experiment({"data.train_size=64", "data.batch_size=16", "train.max_steps=8",
                                        "train.eval_every=0", "train.checkpoint_every=2"});
    c.set("hooks", "[{name: recording, label: crash, priority: 95, crash_at_step: 5}]");
    return c;
  };
  {
    Trainer t(config(), run);
    EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr("toy crash at step 5"));
  }
  ASSERT_EQ(count_of(read_file(run / "metrics.csv"), ",val/accuracy,"), 1u);
  {
    Trainer t(config(), run, Mode::resume);
    t.fit();
  }
  const std::string csv = read_file(run / "metrics.csv");
  EXPECT_EQ(duplicate_rows(csv), 0u) << csv;
  EXPECT_EQ(count_of(csv, ",val/accuracy,"), 2u) << "steps 4 and 8";
}

// A hook added in C++ after the build gets its state back in a resumed run (on_restore as it is added).
TEST(Resume, AHookAddedInCodeGetsItsStateBack) {
  const fs::path run = fresh_dir("added_hook");
  const auto added = [] { return hook_registry().create(Config::parse("{name: recording, label: added}")); };
  {
    Trainer t(toys::shapes_experiment({"train.max_steps=4", "train.eval_every=0"}), run);
    t.add_hook(added());
    t.fit();
  }
  toys::recording().clear();
  {
    Trainer t(toys::shapes_experiment({"train.max_steps=6", "train.eval_every=0"}), run, Mode::resume);
    t.add_hook(added());
    t.fit();
  }
  EXPECT_THAT(toys::recording().events, Contains("added: restored 4"));
}

// `facet train --resume RUN_DIR key=value ...` applies every override (the first is not taken for
// a CONFIG) and keeps them in config.yaml for the next resume; a CONFIG beside --resume, and a new
// run into a directory that holds one, are refused.
TEST(Resume, TheCommandLineResumesWithOverridesAndGuardsTheRunDirectory) {
  const fs::path run = fresh_dir("cli_overrides");
  const std::vector<std::string> train = {"train", test_support::source_path("experiments/demo/shapes.yaml"),
                                          "train.max_steps=4", "train.eval_every=0", "data.train_size=64",
                                          "data.eval_size=32", "train.threads=1", "--run-dir", run.string()};
  ASSERT_EQ(run_facet(train, {}, run.string() + ".1.log"), 0) << read_file(run.string() + ".1.log");
  ASSERT_EQ(run_facet({"train", "--resume", run.string(), "train.max_steps=6", "train.log_every=2"}, {},
                      run.string() + ".2.log"),
            0)
      << read_file(run.string() + ".2.log");
  EXPECT_EQ(nlohmann::json::parse(read_file(run / "checkpoints/last/state.json")).at("step").get<int64_t>(), 6);
  EXPECT_EQ(Config::load(run / "config.yaml").get<int64_t>("train.max_steps"), 6);
  EXPECT_NE(run_facet({"train", "--resume", run.string(), test_support::source_path("experiments/demo/shapes.yaml")}, {},
                      run.string() + ".3.log"),
            0);
  EXPECT_THAT(read_file(run.string() + ".3.log"), HasSubstr("the run's own config.yaml is used; give no CONFIG"));
  EXPECT_NE(run_facet(train, {}, run.string() + ".4.log"), 0);
  EXPECT_THAT(read_file(run.string() + ".4.log"),
              HasSubstr(run.string() + ": already holds a run (config.yaml exists); continue it with `facet train --resume"));
  EXPECT_EQ(nlohmann::json::parse(read_file(run / "checkpoints/last/state.json")).at("step").get<int64_t>(), 6);
}

// A run that a hook stopped stays stopped when resumed, and its final metrics are still those of
// its last evaluation (a sweep counts it as finished).
TEST(Resume, ResumingAStoppedRunKeepsItsFinalMetrics) {
  const fs::path run = fresh_dir("cli_stopped");
  // min_delta 10: no evaluation after the first improves, so the second (step 4) stops the run.
  const std::vector<std::string> train = {
      "train", test_support::source_path("experiments/demo/shapes.yaml"), "train.max_steps=20", "train.eval_every=2",
      "data.train_size=64", "data.eval_size=32", "train.threads=1",
      "hooks=[{name: early_stopping, metric: val/accuracy, patience: 1, min_delta: 10}]", "--run-dir", run.string()};
  ASSERT_EQ(run_facet(train, {}, run.string() + ".1.log"), 0) << read_file(run.string() + ".1.log");
  const auto metrics = [&] { return nlohmann::json::parse(read_file(run / "final_metrics.json")); };
  const auto first = metrics();
  EXPECT_EQ(first.at("step").get<int64_t>(), 4);
  ASSERT_TRUE(first.at("metrics").contains("val/accuracy")) << first.dump();
  ASSERT_EQ(run_facet({"train", "--resume", run.string()}, {}, run.string() + ".2.log"), 0)
      << read_file(run.string() + ".2.log");
  EXPECT_THAT(read_file(run.string() + ".2.log"), HasSubstr("nothing to resume"));
  EXPECT_EQ(metrics(), first);
}

TEST(Resume, OptionsOutOfRangeAreErrorsNamingTheKey) {
  const auto message = [](const std::string& o) {
    return test_support::message_of([&] { Trainer t(toys::shapes_experiment({o}), fresh_dir("options"), Mode::check); });
  };
  EXPECT_THAT(message("train.log_every=0"), HasSubstr("train.log_every: expected a number of steps >= 1, got 0"));
  EXPECT_THAT(message("train.ema_decay=1.5"), HasSubstr("train.ema_decay: expected 0 (off) or a decay in (0, 1), got 1.5"));
  EXPECT_THAT(message("train.dist_timeout_s=.nan"), HasSubstr("train.dist_timeout_s: expected a timeout in seconds > 0"));
  EXPECT_THAT(message("train.clip_norm=-1"), HasSubstr("train.clip_norm: expected a finite norm >= 0"));
  EXPECT_THAT(message("train.amp=fp8"), HasSubstr("train.amp: expected none, bf16 or fp16, got \"fp8\""));
  // Optimiser numbers too: a NaN learning rate is named, never handed to LibTorch.
  EXPECT_THAT(message("optim.lr=.nan"), HasSubstr("optim.lr: expected a finite number >= 0"));
  EXPECT_THAT(message("optim.weight_decay=-0.1"), HasSubstr("optim.weight_decay: expected a finite number >= 0"));
}

TEST(Resume, AFailingConfigLeavesNoRunDirectory) {
  const fs::path run = fresh_dir("no_run_dir");
  EXPECT_THAT(test_support::message_of([&] { Trainer t(toys::shapes_experiment({"train.max_step=3"}), run); }),
              HasSubstr("did you mean train.max_steps?"));
  EXPECT_FALSE(fs::exists(run));
}

// on_error: skip skips a sample whatever fails in it: Facet, LibTorch, OpenCV, the allocator.
TEST(Resume, OnErrorSkipSkipsEveryKindOfSampleFailure) {
  for (const std::string kind : {"facet", "torch", "opencv", "alloc"}) {
    Trainer t(toys::shapes_experiment({"data.name=flaky_shapes", "data.fail=[0,1,2,3,4,5,6,7,8,9]", "data.throw=" + kind,
                                       "data.on_error=skip", "train.max_steps=3", "train.eval_every=0",
                                       "data.train_size=64", "data.batch_size=16"}),
              fresh_dir("skip_" + kind));
    EXPECT_EQ(t.fit().step, 3) << kind;
  }
  Trainer t(toys::shapes_experiment({"data.name=flaky_shapes", "data.fail=[0,1,2,3,4,5,6,7,8,9]", "data.throw=torch",
                                     "train.max_steps=3", "train.eval_every=0", "data.train_size=64",
                                     "data.batch_size=16"}),
            fresh_dir("fail_torch"));
  EXPECT_THAT(test_support::message_of([&] { t.fit(); }),
              AllOf(HasSubstr("of the train split failed to load (data.on_error: skip would skip it): toy LibTorch failure"),
                    Not(HasSubstr("frame #0"))));
}

// Rank 1 loses every sample of its share of one batch: both ranks skip that batch and stay in step.
TEST(Resume, AMicroBatchLostOnOneRankIsSkippedByEveryRank) {
  const fs::path dir = test_support::scratch_dir("facet_resume", "empty_share");
  const auto codes = test_support::fork_ranks(2, pick_free_port(), dir, [&](int rank) {
    Trainer t(toys::shapes_experiment({"data.name=flaky_shapes", "data.fail=[12,13,14,15]", "data.on_error=skip",
                                       "data.sampler={name: sequential}", "data.train_size=64", "data.batch_size=8",
                                       "train.max_steps=5", "train.eval_every=0", "train.dist_timeout_s=30",
                                       "data.workers=1"}),
              dir / "run");
    const RunResult r = t.fit();
    write_file_atomic(dir / fmt::format("rank{}.steps", rank), std::to_string(r.step));
  }, 120);
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << test_support::rank_errors(dir, 2);
  EXPECT_EQ(read_file(dir / "rank0.steps"), "5");
  EXPECT_EQ(read_file(dir / "rank1.steps"), "5");
}

}  // namespace
}  // namespace facet::train::test_resume
