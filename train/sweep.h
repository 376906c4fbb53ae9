// Ablation sweeps: a base config, a grid and/or a list of variants, expanded into runs of
// `facet train` that execute K at once (each optionally multi-rank through `facet launch`), skip
// what already finished, and are summarised as mean ± std over the averaged axes (seeds, folds).
//
//   base: ../demo/shapes.yaml           # relative to the sweep file
//   grid: {model.dropout: [0.0, 0.3], seed: [0, 1, 2]}
//   variants: [{name: small, model.widths: [8, 16]}]   # optional; crossed with the grid
//   average_over: [seed]                # default [seed]
//   metrics: [val/accuracy]
//   parallel: 1                         # runs at once
//   nproc_per_node: 1                   # ranks per run (facet launch)
//   master_port: 0                      # 0: each multi-rank run picks a free port; else the i-th
//                                       # concurrent run uses master_port + i
//   overrides: [train.max_steps=100]    # applied to every run
//   reference:                          # optional: the paper's figures, printed beside the measured ones
//     source: "Ge et al., TIST 2024, Table 3"   # required: where the figures come from
//     values:
//       test/f1/mean: 0.652             # a metric of `metrics`: the figure for every variant
//       small: {test/f1/mean: 0.640}    # a variant label: its own figures, over the ones above
//
// `reference:` may also sit in the base experiment config (training ignores it); the sweep file's,
// when present, replaces it. Figures are in the metric's own units (an F1 of 65.2 % is 0.652);
// per-variant figures belong in the sweep file, whose keys may contain dots. A metric that is not in
// `metrics`, a variant label that no run has, or a figure that is not a finite number is an error.
#pragma once

#include "core/config.h"

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace facet::train {

struct SweepRun {
  std::string variant;                 // label of the non-averaged overrides, e.g. "model.dropout=0.3"
  std::string replicate;               // label of the averaged ones, e.g. "seed=1"
  std::vector<std::string> overrides;  // dotted key=value, in order
  std::filesystem::path run_dir;
};

// The paper's reported figures (see the header).
struct SweepReference {
  std::string source;                                                // "" when the sweep states none
  std::string origin;                                                // "file:line" of `reference`
  std::map<std::string, double> all;                                 // metric -> figure, every variant
  std::map<std::string, std::map<std::string, double>> per_variant;  // variant -> metric -> figure

  bool empty() const { return all.empty() && per_variant.empty(); }
  // The figure for `metric` of `variant`, if the paper gives one.
  std::optional<double> value(const std::string& variant, const std::string& metric) const;
};

struct SweepPlan {
  std::string name;
  std::filesystem::path base_config;
  std::filesystem::path out_dir;
  std::vector<std::string> metrics;
  int parallel = 1;
  int nproc_per_node = 1;
  int master_port = 0;  // 0: each launcher picks a free port; else concurrent runs use master_port + slot
  std::vector<SweepRun> runs;
  SweepReference reference;
};

// Expands the sweep file; `out_dir` defaults to runs/sweeps/<name>.
// `overrides` (key=value, from the command line) apply to every member, after the file's `overrides:`.
SweepPlan plan_sweep(const std::filesystem::path& sweep_file, const std::filesystem::path& out_dir = {},
                     const std::vector<std::string>& overrides = {});

// Final metrics a finished run wrote (run_dir/final_metrics.json), or empty if it did not finish.
std::map<std::string, double> read_final_metrics(const std::filesystem::path& run_dir);
void write_final_metrics(const std::filesystem::path& run_dir, int64_t step, const std::map<std::string, double>& metrics);

// The command line of one member: `facet [launch ... --] train ...`, resuming when the run has a
// checkpoint. `slot` (0 .. parallel-1) is the member's place among the runs going at once.
std::vector<std::string> sweep_command(const SweepPlan& plan, const SweepRun& run, int slot,
                                       const std::string& facet_binary);

// Runs every unfinished member with `facet_binary`; returns the number of failed runs.
int run_sweep(const SweepPlan& plan, const std::string& facet_binary);

// results.md and results.csv in plan.out_dir: one row per variant, mean ± std (sample std over
// replicates) of each metric, the replicate count, and the run directories; for the metrics the
// reference gives, the paper's figure and the difference (measured mean - paper) beside them
// (CSV columns <metric>_reference and <metric>_diff). Returns the Markdown, for the terminal.
std::string write_sweep_report(const SweepPlan& plan);

}  // namespace facet::train
