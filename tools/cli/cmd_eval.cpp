// `facet eval RUN_DIR | CHECKPOINT_DIR [--split S] [--config FILE] [key=value ...]`: evaluates saved
// weights and writes the metric table and per-sample predictions under the run's eval/.
#include "core/config.h"
#include "core/file_io.h"
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/trainer.h"

#include <algorithm>
#include <set>

namespace facet::cli {
namespace fs = std::filesystem;

namespace {

// "AU2" < "AU10" (digits compared as numbers); "mean" last.
bool natural_less(const std::string& a, const std::string& b) {
  if ((a == "mean") != (b == "mean")) return b == "mean";
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const auto x = std::stoll(a.substr(i, ie - i)), y = std::stoll(b.substr(j, je - j));
      if (x != y) return x < y;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Metrics named <family>/<label> that share their labels (per-AU F1, its all-positive baseline,
// prediction rates) as one table: a row per label, a column per family. Printed and written as CSV;
// returns the result keys it showed.
std::set<std::string> print_label_table(const std::map<std::string, double>& results, const std::string& split,
                                        const fs::path& csv) {
  std::map<std::string, std::map<std::string, double>> families;  // family -> label -> value
  for (const auto& [key, value] : results) {
    const std::string name = key.substr(split.size() + 1);
    const size_t cut = name.rfind('/');
    if (cut != std::string::npos) families[name.substr(0, cut)][name.substr(cut + 1)] = value;
  }
  std::vector<std::string> columns, labels;
  for (const auto& [family, values] : families)
    if (values.size() >= 3) {
      columns.push_back(family);
      for (const auto& [label, v] : values)
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
    }
  if (columns.empty()) return {};
  std::sort(labels.begin(), labels.end(), natural_less);
  std::string text = fmt::format("\n{:<20}", "label"), table = "label";
  for (const auto& c : columns) text += fmt::format(" {:>16}", c), table += "," + c;
  text += "\n", table += "\n";
  for (const auto& label : labels) {
    text += fmt::format("{:<20}", label), table += label;
    for (const auto& c : columns) {
      const auto& values = families[c];
      const auto it = values.find(label);
      text += it == values.end() ? fmt::format(" {:>16}", "-") : fmt::format(" {:>16.4f}", it->second);
      table += it == values.end() ? "," : fmt::format(",{:.6f}", it->second);
    }
    text += "\n", table += "\n";
  }
  fmt::print("{}", text);
  write_file_atomic(csv, table);
  std::set<std::string> shown;
  for (const auto& c : columns)
    for (const auto& [label, v] : families[c]) shown.insert(split + "/" + c + "/" + label);
  return shown;
}

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
  config.consume("reference");  // the paper's figures, for sweep reports (train/sweep.h)
  train::Trainer evaluator(std::move(config), run_dir, train::Mode::evaluate);
  evaluator.load_weights(checkpoint);
  const fs::path out = run_dir / "eval";
  const auto results = evaluator.evaluate(split, out / (split + "_predictions.csv"));
  std::string table = "metric,value\n";
  for (const auto& [name, value] : results) table += fmt::format("{},{:.6f}\n", name, value);
  write_file_atomic(out / (split + "_metrics.csv"), table);
  // Per-label families as a table, the other metrics as a list.
  const auto tabled = print_label_table(results, split, out / (split + "_per_label.csv"));
  fmt::print("\n{:<28} {}\n", "metric", "value");
  for (const auto& [name, value] : results)
    if (!tabled.count(name)) fmt::print("{:<28} {:.4f}\n", name, value);
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
