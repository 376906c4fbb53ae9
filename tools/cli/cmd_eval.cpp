// `facet eval RUN_DIR | CHECKPOINT_DIR [--split S] [--config FILE] [key=value ...]`: evaluates saved
// weights and writes the metric table and per-sample predictions under the run's eval/.
#include "core/config.h"
#include "core/file_io.h"
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/trainer.h"

namespace facet::cli {
namespace fs = std::filesystem;

namespace {

struct EvalArgs {
  std::string target, config, split, checkpoint = "best";
  std::vector<std::string> overrides;
};

void run_eval(const EvalArgs& args) {
  fs::path target = args.target, run_dir, checkpoint;
  if (fs::exists(target / "model.safetensors")) {  // a checkpoint directory: run/checkpoints/step_N
    checkpoint = target;
    run_dir = target.parent_path().parent_path();
  } else if (fs::is_directory(target / "checkpoints")) {
    run_dir = target;
    const fs::path link = run_dir / "checkpoints" / args.checkpoint;
    const fs::path fallback = run_dir / "checkpoints" / "last";
    checkpoint = fs::exists(link) ? fs::canonical(link) : fs::exists(fallback) ? fs::canonical(fallback) : fs::path();
    if (checkpoint.empty()) fail("{}: no checkpoints/{} or checkpoints/last to evaluate", run_dir.string(), args.checkpoint);
  } else {
    fail("{}: expected a run directory (with checkpoints/) or a checkpoint directory (with model.safetensors)",
         target.string());
  }
  const fs::path config_file = args.config.empty() ? run_dir / "config.yaml" : fs::path(args.config);
  if (!fs::exists(config_file)) fail("{}: no config; pass --config FILE", config_file.string());
  Config config = Config::load(config_file, args.overrides);
  const std::string split = args.split.empty() ? config.get<std::string>("data.eval_split", "val") : args.split;
  train::Trainer evaluator(std::move(config), run_dir, train::Mode::evaluate);
  evaluator.load_weights(checkpoint);
  const fs::path out = run_dir / "eval";
  const auto results = evaluator.evaluate(split, out / (split + "_predictions.csv"));
  std::string table = "metric,value\n";
  fmt::print("{:<28} {}\n", "metric", "value");
  for (const auto& [name, value] : results) {
    fmt::print("{:<28} {:.4f}\n", name, value);
    table += fmt::format("{},{:.6f}\n", name, value);
  }
  write_file_atomic(out / (split + "_metrics.csv"), table);
  log::info("wrote {} and {}", (out / (split + "_metrics.csv")).string(), (out / (split + "_predictions.csv")).string());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a run's (or a checkpoint's) weights on a split");
  cmd->add_option("target", args->target, "RUN_DIR or a checkpoint directory (RUN_DIR/checkpoints/step_N)")->required();
  cmd->add_option("overrides", args->overrides, "Dotted config overrides");
  cmd->add_option("--split", args->split, "Split to evaluate (default data.eval_split, else val)");
  cmd->add_option("--config", args->config, "Config to use instead of RUN_DIR/config.yaml");
  cmd->add_option("--checkpoint", args->checkpoint, "best or last (for a RUN_DIR; default best, else last)");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace facet::cli
