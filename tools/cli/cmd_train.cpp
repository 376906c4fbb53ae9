// `facet train CONFIG [key=value ...]` and `facet train --resume RUN_DIR [key=value ...]`.
#include "core/config.h"
#include "core/log.h"
#include "core/text.h"
#include "tools/cli/commands.h"
#include "train/metric_table.h"
#include "train/sweep.h"
#include "train/trainer.h"

#include <fmt/chrono.h>

#include <chrono>
#include <cstdlib>
#include <memory>

namespace facet::cli {
namespace fs = std::filesystem;

namespace {

struct TrainArgs {
  std::string config;
  std::string resume;
  std::string run_dir;
  std::vector<std::string> overrides;
};

fs::path default_run_dir(const Config& config, const fs::path& config_file) {
  const std::string experiment = config.get<std::string>("experiment", config_file.stem().string());
  // Ranks started together by `facet launch` share one stamp, so they agree on the directory.
  const char* stamp = std::getenv("FACET_RUN_STAMP");
  std::tm local{};
  const std::time_t now = std::time(nullptr);
  localtime_r(&now, &local);
  const std::string when = stamp && *stamp ? std::string(stamp) : fmt::format("{:%Y%m%d-%H%M%S}", local);
  return fs::path("runs") / experiment / when;
}

int run_train(const TrainArgs& args) {
  fs::path run_dir;
  Config config;
  const bool resume = !args.resume.empty();
  if (resume) {
    run_dir = args.resume;
    if (!args.run_dir.empty()) fail("facet train: --resume continues the run in its own directory; drop --run-dir");
    // The positional CONFIG slot catches the first override: the run's own config.yaml is read.
    std::vector<std::string> overrides = args.overrides;
    if (!args.config.empty()) {
      if (args.config.find('=') == std::string::npos)
        fail("facet train --resume {}: the run's own config.yaml is used; give no CONFIG ({}), only key=value "
             "overrides",
             run_dir.string(), args.config);
      overrides.insert(overrides.begin(), args.config);
    }
    if (!fs::exists(run_dir / "config.yaml"))
      fail("{}: not a run directory (no config.yaml); expected the directory `facet train` printed", run_dir.string());
    config = Config::load(run_dir / "config.yaml", overrides);
  } else {
    if (args.config.empty()) fail("facet train: give a CONFIG file or --resume RUN_DIR");
    config = Config::load(args.config, args.overrides);
    run_dir = args.run_dir.empty() ? default_run_dir(config, args.config) : fs::path(args.run_dir);
  }
  // The paper's figures are for `facet sweep` reports (train/sweep.h); training does not read them.
  config.consume("reference");
  const Config read = config;  // a handle on the same record of read keys
  std::unique_ptr<train::Trainer> built;
  try {
    built = std::make_unique<train::Trainer>(std::move(config), run_dir, resume ? train::Mode::resume : train::Mode::train);
  } catch (const Error& e) {
    // A check that stops the build before the unused-key check (`train: set max_steps` when the
    // file says `trian:`) may be caused by a misspelt key: name it too, when the error is about the
    // key it is a likely misspelling of. Other unread keys were only not reached yet (a missing
    // data file stops the build before the evaluation reads data.eval_transforms).
    const std::string_view what = e.what();
    std::vector<std::string> typos;
    for (auto& line : read.likely_typos()) {
      const size_t at = line.find("did you mean ");
      if (at == std::string::npos || what.find(line) != std::string_view::npos) continue;
      const std::string meant = line.substr(at + 13, line.find_first_of("? ", at + 13) - (at + 13));
      if (what.find(meant) != std::string_view::npos) typos.push_back(std::move(line));
    }
    if (typos.empty()) throw;
    fail("{}\n{}", e.what(), join(typos, "\n"));
  }
  train::Trainer& trainer = *built;
  const train::RunResult result = trainer.fit();
  if (result.interrupted) return 128 + train::stop_signal();
  std::map<std::string, double> final_metrics = result.last_eval;
  const std::map<std::string, double> tested = trainer.test();  // every rank takes part
  for (const auto& [name, value] : tested) final_metrics[name] = value;
  if (!trainer.runtime().leader()) return 0;
  train::write_final_metrics(run_dir, result.step, final_metrics);
  // The last evaluation, then the held-out test split (what papers report), each as a table.
  const auto show = [](const std::map<std::string, double>& metrics, const std::string& split, const std::string& what) {
    const auto table = train::arrange_metrics(metrics, split);
    log::info("{}:", what);
    if (!table.text.empty()) fmt::print(stderr, "\n{}\n", table.text);
    for (const auto& [name, value] : table.headline) log::info("  {:<28} {:.4f}", name, value);
  };
  if (!result.last_eval.empty())
    show(result.last_eval, trainer.config().get<std::string>("data.eval_split", "val"),
         fmt::format("final evaluation at step {}", result.step));
  if (!tested.empty()) {
    const std::string split = trainer.config().get<std::string>("data.test_split");
    show(tested, split, fmt::format("test split \"{}\"", split));
  }
  log::info("run directory: {}  (log.txt, metrics.csv, config.yaml, checkpoints/{})", run_dir.string(),
            fs::exists(run_dir / "visuals") ? ", visuals/" : "");
  const fs::path logdir = run_dir.has_parent_path() ? run_dir.parent_path() : run_dir;
  log::info("view the curves: tensorboard --logdir {}", logdir.string());
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a model from a YAML experiment config");
  cmd->add_option("config", args->config, "Experiment config (YAML)");
  cmd->add_option("overrides", args->overrides, "Dotted overrides, e.g. train.lr=1e-4 data.folds=[1,2]");
  cmd->add_option("--resume", args->resume, "Continue the run in RUN_DIR from its last complete checkpoint");
  cmd->add_option("--run-dir", args->run_dir, "Where to write the run (default runs/<experiment>/<time>)");
  cmd->callback([args] {
    const int code = run_train(*args);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace facet::cli
