// `facet sweep SWEEP.yaml`: the ablation launcher (see train/sweep.h for the file format).
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/sweep.h"

#include <unistd.h>

namespace facet::cli {

void add_sweep_command(CLI::App& app) {
  struct Args {
    std::string file, out;
    std::vector<std::string> overrides;
    bool report_only = false, dry_run = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("sweep", "Run an ablation sweep (grid × variants × seeds) and tabulate mean ± std");
  cmd->add_option("sweep", args->file, "Sweep file (YAML)")->required();
  cmd->add_option("overrides", args->overrides, "key=value for every run, e.g. data.root=/data/DeepLesion (after the file's overrides)");
  cmd->add_option("--out", args->out, "Sweep directory (default runs/sweeps/<name>)");
  cmd->add_flag("--report-only", args->report_only, "Only rewrite results.md / results.csv from finished runs");
  cmd->add_flag("--dry-run", args->dry_run, "Print the runs and their overrides without starting them");
  cmd->callback([args] {
    const auto plan = train::plan_sweep(args->file, args->out, args->overrides);
    if (args->dry_run) {
      for (const auto& run : plan.runs)
        fmt::print("{}  {}\n", run.run_dir.string(), fmt::join(run.overrides, " "));
      return;
    }
    int failures = 0;
    if (!args->report_only) {
      char self[4096];
      const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
      if (n <= 0) fail("sweep: cannot find the facet executable (/proc/self/exe)");
      failures = train::run_sweep(plan, std::string(self, static_cast<size_t>(n)));
    }
    fmt::print("{}", train::write_sweep_report(plan));  // the table, with the paper's figures if given
    log::info("results: {} and {}", (plan.out_dir / "results.md").string(), (plan.out_dir / "results.csv").string());
    if (failures) fail("{} of {} runs failed; rerun `facet sweep {}` to retry them (finished runs are skipped)",
                       failures, plan.runs.size(), args->file);
  });
}

}  // namespace facet::cli
