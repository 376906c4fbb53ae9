#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"
#include "train/sweep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

namespace facet::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path temp(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("facet_sweep_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

fs::path write_sweep(const fs::path& dir, const std::string& body) {
  write_file_atomic(dir / "sweep.yaml", "base: " FACET_SOURCE_DIR "/experiments/demo/shapes.yaml\n" + body);
  return dir / "sweep.yaml";
}

TEST(Sweep, ExpandsVariantsTimesGridAndSeparatesAveragedAxes) {
  const fs::path dir = temp("plan");
  const auto plan = plan_sweep(write_sweep(dir, R"(
name: ablation
grid: {model.dropout: [0.0, 0.3], seed: [0, 1]}
variants: [{name: full}, {name: small, model.widths: [8, 16]}]
metrics: [val/accuracy]
overrides: [train.max_steps=5]
)"),
                               dir / "out");
  EXPECT_EQ(plan.name, "ablation");
  ASSERT_EQ(plan.runs.size(), 8u);
  EXPECT_EQ(plan.runs[0].variant, "full,model.dropout=0.0");
  EXPECT_EQ(plan.runs[0].replicate, "seed=0");
  EXPECT_EQ(plan.runs[5].variant, "small,model.dropout=0.0");
  EXPECT_EQ(plan.runs[5].overrides,
            (std::vector<std::string>{"train.max_steps=5", "model.widths=[8, 16]", "model.dropout=0.0", "seed=1"}));
  EXPECT_EQ(plan.runs[5].run_dir, dir / "out" / "small_model.dropout=0.0" / "seed=1");
}

TEST(Sweep, ReportIsMeanAndSampleStdOverReplicates) {
  const fs::path dir = temp("report");
  const auto plan = plan_sweep(write_sweep(dir, "grid: {seed: [0, 1, 2]}\nmetrics: [val/accuracy, val/macro_f1]\n"),
                               dir / "out");
  const double acc[] = {0.5, 0.7, 0.9};
  for (size_t i = 0; i < 3; ++i)
    write_final_metrics(plan.runs[i].run_dir, 10, {{"val/accuracy", acc[i]}, {"val/macro_f1", 0.25}});
  write_sweep_report(plan);
  const std::string md = read_file(dir / "out" / "results.md");
  // mean 0.7, sample std sqrt(((0.2)^2 + 0 + (0.2)^2) / 2) = 0.2
  EXPECT_THAT(md, HasSubstr("| base | 3 | 0.7000 ± 0.2000 | 0.2500 ± 0.0000 |"));
  EXPECT_THAT(read_file(dir / "out" / "results.csv"), HasSubstr("\"base\",3,0.700000,0.200000,0.250000,0.000000,"));
}

TEST(Sweep, ErrorsNameTheSweepFile) {
  const fs::path dir = temp("errors");
  write_file_atomic(dir / "bad.yaml", "base: missing.yaml\nmetrics: [a]\n");
  try {
    plan_sweep(dir / "bad.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.yaml:1"));
    EXPECT_THAT(e.what(), HasSubstr("missing.yaml does not exist"));
  }
  write_file_atomic(dir / "grid.yaml", "base: " FACET_SOURCE_DIR "/experiments/demo/shapes.yaml\nmetrics: [a]\ngrid: {seed: 3}\n");
  EXPECT_THROW(plan_sweep(dir / "grid.yaml"), Error);
}

// Multi-rank members go through facet launch on ports that do not collide, also when resuming.
TEST(Sweep, CommandsLaunchRanksOnDistinctPortsAndResume) {
  const fs::path dir = temp("command");
  const fs::path file = write_sweep(dir, R"(
name: ranks
grid: {seed: [0, 1]}
metrics: [val/accuracy]
parallel: 2
nproc_per_node: 2
)");
  SweepPlan plan = plan_sweep(file, dir / "out");
  ASSERT_EQ(plan.runs.size(), 2u);
  const auto first = sweep_command(plan, plan.runs[0], 0, "facet");
  EXPECT_EQ(join(std::vector<std::string>(first.begin(), first.begin() + 8), " "),
            "facet launch --nproc-per-node 2 --master-port 0 -- train");
  EXPECT_EQ(first.back(), plan.runs[0].run_dir.string());
  plan.master_port = 31000;
  EXPECT_EQ(sweep_command(plan, plan.runs[1], 1, "facet")[5], "31001");
  // A member with a checkpoint resumes, still on its ranks.
  fs::create_directories(plan.runs[1].run_dir / "checkpoints" / "last");
  EXPECT_EQ(join(sweep_command(plan, plan.runs[1], 1, "facet"), " "),
            "facet launch --nproc-per-node 2 --master-port 31001 -- train --resume " + plan.runs[1].run_dir.string());
}

// The whole launcher: runs, tabulates, and skips finished runs when started again.
TEST(Sweep, RunsSkipsFinishedAndTabulates) {
  const fs::path dir = temp("run");
  const fs::path file = write_sweep(dir, R"(
name: tiny
grid: {model.dropout: [0.0, 0.5], seed: [0, 1]}
metrics: [val/accuracy]
overrides: [train.max_steps=4, train.eval_every=4, data.train_size=64, data.eval_size=32, train.threads=1]
parallel: 2
)");
  auto run = [&](const std::string& log) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (!std::freopen(log.c_str(), "w", stderr)) ::_exit(126);
      const std::string facet = FACET_BINARY_DIR "/tools/cli/facet";
      const std::string out = (dir / "out").string();
      ::execl(facet.c_str(), facet.c_str(), "sweep", file.c_str(), "--out", out.c_str(), nullptr);
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  ASSERT_EQ(run((dir / "first.log").string()), 0) << read_file(dir / "first.log");
  const std::string md = read_file(dir / "out" / "results.md");
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.0 | 2 |"));
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.5 | 2 |"));
  ASSERT_EQ(run((dir / "second.log").string()), 0);
  EXPECT_THAT(read_file(dir / "second.log"), HasSubstr("4 runs, 4 already finished, 0 to run"));
}

}  // namespace
}  // namespace facet::train
