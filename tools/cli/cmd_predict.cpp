// `facet predict RUN_DIR|CHECKPOINT_DIR IMAGES... [--out DIR]`: runs a trained model on image files,
// folders or .txt lists and writes predictions.jsonl and a picture per image.
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/predictor.h"

namespace facet::cli {

void add_predict_command(CLI::App& app) {
  struct Args {
    train::PredictOptions options;
    std::vector<std::string> inputs, overrides;
    std::string target, config, out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("predict", "Run a trained model on images; write predictions (JSON lines) and pictures");
  cmd->add_option("target", args->target, "RUN_DIR or a checkpoint directory")->required();
  cmd->add_option("inputs", args->inputs, "Images, folders (searched recursively) or .txt lists of paths")->required();
  cmd->add_option("--checkpoint", args->options.checkpoint, "best or last (for a RUN_DIR; default best)");
  cmd->add_option("--config", args->config, "Config to use instead of RUN_DIR/config.yaml");
  cmd->add_option("--out", args->out, "Output folder (default RUN_DIR/predictions)");
  cmd->add_option("--batch", args->options.batch_size, "Images per forward pass (default 8)");
  cmd->add_option("--set", args->overrides, "Dotted config overrides, e.g. --set data.eval_transforms=[...]");
  cmd->add_flag("!--no-pictures", args->options.pictures, "Write predictions only");
  cmd->callback([args] {
    train::PredictOptions o = args->options;
    o.target = args->target;
    o.config = args->config;
    o.out = args->out;
    o.overrides = args->overrides;
    for (const auto& i : args->inputs) o.inputs.emplace_back(i);
    const auto summary = train::predict(o);
    for (const auto& f : summary.files) log::info("wrote {}", f.string());
    if (!summary.pictures.empty()) log::info("pictures in {}", summary.pictures.string());
  });
}

}  // namespace facet::cli
