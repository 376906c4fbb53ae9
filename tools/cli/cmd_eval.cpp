// `facet eval RUN_DIR | CHECKPOINT_DIR [--split S] [--config FILE] [key=value ...]`: evaluates saved
// weights and writes the metric table, per-sample predictions and the task's pictures under the
// run's eval/ (or the checkpoint's, outside a run directory). Builds the model, the split and the
// metrics only: no training split, no optimiser.
#include "core/config.h"
#include "core/file_io.h"
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/builder.h"
#include "train/evaluator.h"
#include "train/metric_table.h"
#include "train/runtime.h"

namespace facet::cli {
namespace fs = std::filesystem;

namespace {

struct EvalArgs {
  std::string target, config, split, checkpoint = "best";
  std::vector<std::string> overrides;
  int64_t images = -1;
};

void run_eval(const EvalArgs& args) {
  const train::CheckpointTarget target = train::resolve_checkpoint(args.target, args.checkpoint);
  const fs::path config_file = !args.config.empty() ? fs::path(args.config)
                               : target.run_dir.empty() ? fs::path()
                                                        : target.run_dir / "config.yaml";
  if (config_file.empty() || !fs::exists(config_file))
    fail("{}: not inside a run directory, so there is no config to read; pass --config FILE", target.checkpoint.string());
  Config config = Config::load(config_file, args.overrides);
  train::TrainOptions options = train::TrainOptions::from(config.at("train"));
  if (args.images >= 0) options.log_images = args.images;
  else if (options.log_images == 0) options.log_images = 8;
  // The pictures show the first batch: a larger batch when more images are asked for (the metrics
  // do not depend on the batch size).
  const int64_t batch = config.get<int64_t>("data.eval_batch_size", config.get<int64_t>("data.batch_size"));
  if (args.images > batch) {
    log::info("evaluating in batches of {} (--images {}; data.eval_batch_size is {})", args.images, args.images, batch);
    config.set("data.eval_batch_size", std::to_string(args.images), "--images");
  }
  train::Runtime runtime = train::make_runtime(config, options, /*connect=*/true);
  auto model = train::build_model(config, options, runtime.device);
  train::load_checkpoint_weights(*model, target.checkpoint, options.ema_decay > 0, runtime.device);
  model->eval();
  const std::string split = args.split.empty() ? config.get<std::string>("data.eval_split", "val") : args.split;
  train::Evaluator evaluator(config, split, runtime, options, *model);
  // Evaluation reads the model, the split and the metrics; the training sections are not typos.
  config.at("model").check_unused();
  if (config.has("metrics")) config.at("metrics").check_unused();
  config.consume();

  const fs::path out = (target.run_dir.empty() ? target.checkpoint : target.run_dir) / "eval";
  const train::EvalOutput result = evaluator.run(*model, out / (split + "_predictions"));
  if (!runtime.leader()) return;
  std::string csv = "metric,value\n";
  for (const auto& [name, value] : result.metrics) csv += fmt::format("{},{:.6f}\n", name, value);
  write_file_atomic(out / (split + "_metrics.csv"), csv);
  for (const auto& [tag, png] : result.pictures) {
    std::string name = tag;
    std::replace(name.begin(), name.end(), '/', '_');
    write_file_atomic(out / (name + ".png"), png.bytes);
  }
  // Per-label families as a table, the other metrics as a list.
  const train::MetricTable table = train::arrange_metrics(result.metrics, split);
  if (!table.text.empty()) {
    fmt::print("\n{}", table.text);
    write_file_atomic(out / (split + "_per_label.csv"), table.csv);
  }
  fmt::print("\n{:<28} {}\n", "metric", "value");
  for (const auto& [name, value] : table.headline) fmt::print("{:<28} {:.4f}\n", name, value);
  log::info("wrote {} (metrics, predictions{}) from {}", out.string(), result.pictures.empty() ? "" : ", pictures",
            target.checkpoint.string());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a run's (or a checkpoint's) weights on a split");
  cmd->add_option("target", args->target, "RUN_DIR or a checkpoint directory (RUN_DIR/checkpoints/step_N)")->required();
  cmd->add_option("overrides", args->overrides, "Dotted config overrides");
  cmd->add_option("--split", args->split, "Split to evaluate (default data.eval_split, else val)");
  cmd->add_option("--config", args->config, "Config to use instead of RUN_DIR/config.yaml");
  cmd->add_option("--checkpoint", args->checkpoint, "best or last (for a RUN_DIR; default best, else the newest)");
  cmd->add_option("--images", args->images, "Samples drawn in the pictures (default train.log_images, else 8; 0: none)");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace facet::cli
