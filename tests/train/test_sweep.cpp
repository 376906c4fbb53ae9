#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"
#include "tests/support/facet_process.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"
#include "train/sweep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

namespace facet::train::test_sweep {
namespace {

namespace fs = std::filesystem;
using test_support::run_facet;
using ::testing::HasSubstr;
using ::testing::Not;
using test_support::message_of;

fs::path temp(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("facet_sweep_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

fs::path write_sweep(const fs::path& dir, const std::string& body) {
  write_file_atomic(dir / "sweep.yaml", "base: " + test_support::source_path("experiments/demo/shapes.yaml") + "\n" + body);
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

// A metric that is not a number (an F1 over no positive label) is written as null, JSON having no
// NaN, and read back as NaN: the run counts as finished and the report says nan.
TEST(Sweep, ANotANumberMetricIsWrittenAndReadBack) {
  const fs::path dir = temp("nan");
  const auto plan = plan_sweep(write_sweep(dir, "grid: {seed: [0, 1]}\nmetrics: [val/accuracy, val/macro_f1]\n"), dir / "out");
  for (size_t i = 0; i < 2; ++i)
    write_final_metrics(plan.runs[i].run_dir, 10,
                        {{"val/accuracy", 0.5}, {"val/macro_f1", std::numeric_limits<double>::quiet_NaN()}});
  EXPECT_THAT(read_file(plan.runs[0].run_dir / "final_metrics.json"), HasSubstr("\"val/macro_f1\": null"));
  const auto back = read_final_metrics(plan.runs[0].run_dir);
  EXPECT_DOUBLE_EQ(back.at("val/accuracy"), 0.5);
  EXPECT_TRUE(std::isnan(back.at("val/macro_f1")));
  write_sweep_report(plan);
  EXPECT_THAT(read_file(dir / "out" / "results.md"), HasSubstr("| base | 2 | 0.5000 ± 0.0000 | nan"));
  write_file_atomic(plan.runs[1].run_dir / "final_metrics.json", R"({"step": 10, "metrics": {"val/accuracy": "high"}})");
  EXPECT_THAT(message_of([&] { read_final_metrics(plan.runs[1].run_dir); }),
              HasSubstr("final_metrics.json: metric \"val/accuracy\": expected a number or null, got \"high\""));
}

// The paper's figures beside the measured mean ± std: one figure for every variant, overridden per
// variant, in the Markdown, the CSV and what `facet sweep` prints.
TEST(Sweep, ReportShowsThePapersFiguresAndTheDifference) {
  const fs::path dir = temp("reference");
  const auto plan = plan_sweep(write_sweep(dir, R"(
grid: {model.dropout: [0.0, 0.3], seed: [0, 1]}
metrics: [val/accuracy, val/macro_f1]
reference:
  source: "Someone et al., Table 3"
  values:
    val/accuracy: 0.85
    model.dropout=0.3: {val/accuracy: 0.65}
)"),
                               dir / "out");
  EXPECT_EQ(plan.reference.source, "Someone et al., Table 3");
  EXPECT_EQ(plan.reference.value("model.dropout=0.0", "val/accuracy").value_or(-1), 0.85);
  EXPECT_EQ(plan.reference.value("model.dropout=0.3", "val/accuracy").value_or(-1), 0.65);
  EXPECT_FALSE(plan.reference.value("model.dropout=0.3", "val/macro_f1").has_value());
  const double acc[] = {0.7, 0.9, 0.6, 0.8};
  for (size_t i = 0; i < 4; ++i)
    write_final_metrics(plan.runs[i].run_dir, 10, {{"val/accuracy", acc[i]}, {"val/macro_f1", 0.5}});
  const std::string printed = write_sweep_report(plan);
  const std::string md = read_file(dir / "out" / "results.md");
  EXPECT_EQ(printed, md);
  EXPECT_THAT(md, HasSubstr("Paper: Someone et al., Table 3 (" + (dir / "sweep.yaml").string() + ":5); Δ = measured mean − paper."));
  EXPECT_THAT(md, HasSubstr("| variant | n | val/accuracy | paper | Δ | val/macro_f1 | runs |\n|---|---|---|---|---|---|---|\n"));
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.0 | 2 | 0.8000 ± 0.1414 | 0.8500 | -0.0500 | 0.5000 ± 0.0000 |"));
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.3 | 2 | 0.7000 ± 0.1414 | 0.6500 | +0.0500 | 0.5000 ± 0.0000 |"));
  const std::string csv = read_file(dir / "out" / "results.csv");
  EXPECT_THAT(csv, HasSubstr("variant,n,val/accuracy_mean,val/accuracy_std,val/accuracy_reference,val/accuracy_diff,"
                             "val/macro_f1_mean,val/macro_f1_std,runs\n"));
  EXPECT_THAT(csv, HasSubstr("\"model.dropout=0.3\",2,0.700000,0.141421,0.650000,0.050000,0.500000,0.000000,"));

  // A variant without finished runs still shows the paper's figure, without a difference.
  fs::remove(plan.runs[0].run_dir / "final_metrics.json");
  fs::remove(plan.runs[1].run_dir / "final_metrics.json");
  EXPECT_THAT(write_sweep_report(plan), HasSubstr("| model.dropout=0.0 | 0 | – | 0.8500 | – | – |"));
}

// The base experiment may state the figures (training ignores the key); the sweep file's replace them.
TEST(Sweep, ReferenceFromTheBaseConfigAndItsErrors) {
  const fs::path dir = temp("reference_base");
  write_file_atomic(dir / "base.yaml", "_base_: " + test_support::source_path("experiments/demo/shapes.yaml") + "\n"
                                       "reference: {source: base paper, values: {val/accuracy: 0.9}}\n");
  auto plan_with = [&](const std::string& body) {
    write_file_atomic(dir / "sweep.yaml", "base: base.yaml\ngrid: {seed: [0, 1]}\nmetrics: [val/accuracy]\n" + body);
    return plan_sweep(dir / "sweep.yaml", dir / "out");
  };
  auto plan = plan_with("");
  EXPECT_EQ(plan.reference.source, "base paper");
  EXPECT_EQ(plan.reference.value("base", "val/accuracy").value_or(-1), 0.9);
  plan = plan_with("reference: {source: sweep paper, values: {base: {val/accuracy: 0.7}}}\n");
  EXPECT_EQ(plan.reference.source, "sweep paper");
  EXPECT_EQ(plan.reference.value("base", "val/accuracy").value_or(-1), 0.7);

  const std::string sweep = (dir / "sweep.yaml").string();
  EXPECT_THAT(message_of([&] { plan_with("reference: {source: p, values: {val/acuracy: 0.7}}\n"); }),
              HasSubstr(sweep + ":4: reference.values.val/acuracy: not one of the sweep's metrics (val/accuracy); "
                                "did you mean val/accuracy?"));
  EXPECT_THAT(message_of([&] { plan_with("reference: {source: p, values: {bsae: {val/accuracy: 0.7}}}\n"); }),
              HasSubstr(sweep + ":4: reference.values.bsae: no variant of the sweep has this label (variants: base); "
                                "did you mean base?"));
  EXPECT_THAT(message_of([&] { plan_with("reference: {source: p, values: {val/accuracy: .nan}}\n"); }),
              HasSubstr(sweep + ":4: reference.values.val/accuracy: expected a finite number, got \".nan\""));
  EXPECT_THAT(message_of([&] { plan_with("reference: {values: {val/accuracy: 0.5}}\n"); }),
              HasSubstr("reference.source: required key is missing"));
  EXPECT_THAT(message_of([&] { plan_with("reference: {source: p, values: {}}\n"); }),
              HasSubstr(sweep + ":4: reference.values: expected a map of metric: figure"));
  EXPECT_THAT(message_of([&] { plan_with("reference: {source: p, values: {val/accuracy: 0.5}, extra: 1}\n"); }),
              HasSubstr("reference.extra: unknown key"));
}

// The repository's sweeps with a paper figure plan, and their figures are metrics they report.
TEST(Sweep, RepositorySweepsStateTheirReferences) {
  const auto plan = plan_sweep(test_support::source_path("experiments/mgrr_net/disfa_3fold.yaml"), temp("repo") / "out");
  EXPECT_THAT(plan.reference.source, HasSubstr("TIST 2024"));
  EXPECT_EQ(plan.reference.value("base", "test/f1/mean").value_or(-1), 0.682);
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
  write_file_atomic(dir / "grid.yaml", "base: " + test_support::source_path("experiments/demo/shapes.yaml") + "\nmetrics: [a]\ngrid: {seed: 3}\n");
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
  write_file_atomic(dir / "base.yaml", "_base_: " + test_support::source_path("experiments/demo/shapes.yaml") + "\n"
                                       "reference:\n  source: \"a paper, Table 1\"\n  values: {val/accuracy: 0.5}\n");
  write_file_atomic(dir / "sweep.yaml", "base: base.yaml\n" R"(
name: tiny
grid: {model.dropout: [0.0, 0.5], seed: [0, 1]}
metrics: [val/accuracy]
overrides: [train.max_steps=4, train.eval_every=4, data.train_size=64, data.eval_size=32, train.threads=1]
parallel: 2
)");
  const fs::path file = dir / "sweep.yaml";
  auto run = [&](const std::string& log, const char* flag = nullptr) {
    std::vector<std::string> args = {"sweep", file.string(), "--out", (dir / "out").string()};
    if (flag) args.emplace_back(flag);
    return run_facet(args, {}, log);
  };
  ASSERT_EQ(run((dir / "first.log").string()), 0) << read_file(dir / "first.log");
  const std::string md = read_file(dir / "out" / "results.md");
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.0 | 2 |"));
  EXPECT_THAT(md, HasSubstr("| model.dropout=0.5 | 2 |"));
  ASSERT_EQ(run((dir / "second.log").string()), 0);
  EXPECT_THAT(read_file(dir / "second.log"), HasSubstr("4 runs, 4 already finished, 0 to run"));
  // A member killed before its first checkpoint (its config.yaml and rows written, nothing saved)
  // starts again from nothing: its rows are not doubled.
  const fs::path member = dir / "out" / "model.dropout=0.0" / "seed=1";
  const std::string rows = read_file(member / "metrics.csv");
  fs::remove_all(member / "checkpoints");
  fs::remove(member / "final_metrics.json");
  ASSERT_EQ(run((dir / "third.log").string()), 0) << read_file(dir / "third.log");
  EXPECT_THAT(read_file(dir / "third.log"), HasSubstr("stopped before its first checkpoint; starting it again"));
  EXPECT_EQ(read_file(member / "metrics.csv"), rows);
  // The base's `reference:` trained without an unused-key error, and the report prints it.
  EXPECT_THAT(md, HasSubstr("| val/accuracy | paper | Δ | runs |"));
  ASSERT_EQ(run((dir / "report.log").string(), "--report-only"), 0);
  const std::string printed = read_file(dir / "report.log");
  EXPECT_THAT(printed, HasSubstr("Paper: a paper, Table 1 ("));
  EXPECT_THAT(printed, HasSubstr("| model.dropout=0.5 | 2 |"));
  EXPECT_THAT(printed, Not(HasSubstr("already finished")));
}

// Overrides on the command line reach every member; a member that fails before training starts
// (its config does not build) stops the sweep, since the others share its config, and its error
// is printed.
TEST(Sweep, AConfigThatDoesNotBuildStopsTheSweepWithItsError) {
  const fs::path dir = temp("broken");
  const fs::path file = write_sweep(dir, "name: broken\ngrid: {seed: [0, 1, 2]}\nmetrics: [val/accuracy]\n");
  const fs::path log = dir / "sweep.log";
  EXPECT_NE(run_facet({"sweep", file.string(), "--out", (dir / "out").string(), "train.max_step=4"}, {}, log), 0);
  const std::string printed = read_file(log);
  EXPECT_THAT(printed, HasSubstr("train.max_step: unknown key (nothing reads it); did you mean train.max_steps?"));
  EXPECT_THAT(printed, HasSubstr("failed before training started; not starting the 2 runs left"));
  EXPECT_FALSE(fs::exists(dir / "out" / "base" / "seed=1.out")) << "the second member was started";
}

}  // namespace
}  // namespace facet::train::test_sweep
