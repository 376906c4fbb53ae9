// `facet summary CONFIG [key=value ...]`: the model's module tree with parameter counts (total,
// trainable, per module) and the shapes of its outputs for a batch of the configured data.
// LibTorch modules have no forward hooks, so shapes are shown for the model's outputs, not per layer.
// With --weights it also applies train.init_weights (as a new run would) and reports the time and the
// peak resident memory: `--dtype bfloat16 --defer-init --weights --no-forward` builds and loads a
// 7-billion-parameter ViT in bf16 without random-initialising it first (README "Weights").
#include "core/config.h"
#include "data/dataset.h"
#include "data/pack.h"
#include "models/layers/construction.h"
#include "models/build.h"
#include "models/model.h"
#include "models/weights/init_weights.h"
#include "tools/cli/commands.h"

#include <chrono>
#include <fstream>

namespace facet::cli {

namespace {

struct Counts {
  int64_t total = 0, trainable = 0;
};

Counts count(const torch::nn::Module& m) {
  Counts c;
  for (const auto& p : m.parameters()) {
    c.total += p.numel();
    if (p.requires_grad()) c.trainable += p.numel();
  }
  return c;
}

std::string grouped(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

void print_tree(const torch::nn::Module& m, const std::string& name, int depth, int max_depth) {
  const Counts c = count(m);
  fmt::print("{:<48} {:>14}\n", fmt::format("{}{} ({})", std::string(2 * depth, ' '), name, m.name()), grouped(c.total));
  if (depth >= max_depth) return;
  for (const auto& child : m.named_children()) print_tree(*child.value(), child.key(), depth + 1, max_depth);
}

// VmHWM of /proc/self/status in bytes (0 where there is none).
int64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

}  // namespace

void add_summary_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int depth = 2;
    int batch = 2;
    std::string dtype = "float32";
    bool defer_init = false, weights = false, no_forward = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("summary", "Print a model's module tree, parameter counts and output shapes");
  cmd->add_option("config", args->config, "Experiment config (YAML)")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", args->overrides, "Dotted overrides");
  cmd->add_option("--depth", args->depth, "Module tree depth (default 2)");
  cmd->add_option("--batch", args->batch, "Samples in the probe batch (default 2)");
  cmd->add_option("--dtype", args->dtype, "Build the model in float32 (default), bfloat16 or float16");
  cmd->add_flag("--defer-init", args->defer_init, "Build without random initialisation (every tensor must then come from --weights)");
  cmd->add_flag("--weights", args->weights, "Apply train.init_weights; report the load time and peak resident memory");
  cmd->add_flag("--no-forward", args->no_forward, "Skip the probe batch (no data needed)");
  cmd->callback([args] {
    Config config = Config::load(args->config, args->overrides);
    config.consume();  // summary reads only part of an experiment; the rest is not a typo
    const auto start = std::chrono::steady_clock::now();
    auto model = models::build_model(config.at("model"), {models::parse_dtype(args->dtype, "--dtype"), args->defer_init});
    const double built = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (args->weights) {
      if (!config.has("train.init_weights")) fail("{}: --weights: the config has no train.init_weights", args->config);
      models::init_weights(*model, config.at("train.init_weights"));
      const double loaded = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("built in {:.1f} s, weights loaded in {:.1f} s more; peak resident memory {:.2f} GiB\n\n", built,
                 loaded - built, static_cast<double>(peak_resident_bytes()) / (1 << 30));
    } else if (args->defer_init) {
      models::check_initialized(*model, "--defer-init without --weights");
    }
    fmt::print("{:<48} {:>14}\n", "module", "parameters");
    print_tree(*model, "model", 0, args->depth);
    const Counts c = count(*model);
    fmt::print("\ntotal parameters:     {}\ntrainable parameters: {}\nnon-trainable:        {}\n", grouped(c.total),
               grouped(c.trainable), grouped(c.total - c.trainable));
    if (args->no_forward) return;
    const Config data = config.at("data");
    auto dataset = data::open_dataset(data, data.get<std::string>("train_split", "train"));
    std::vector<data::Sample> samples;
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < std::min<int64_t>(args->batch, dataset->size()); ++i) {
      samples.push_back(dataset->get(i, 0));
      indices.push_back(i);
    }
    auto batch = data::collate(std::move(samples), std::move(indices), dataset->padding());
    const auto dtype = models::parse_dtype(args->dtype, "--dtype");
    for (auto& [name, t] : batch.fields)
      if (t.is_floating_point()) t = t.to(dtype);  // a model built in bf16 takes bf16 inputs
    fmt::print("\ninput (batch of {}):\n", batch.size());
    for (const auto& [name, t] : batch.fields) fmt::print("  {:<20} {} {}\n", name, c10::str(t.sizes()), c10::toString(t.scalar_type()));
    torch::NoGradGuard no_grad;
    model->eval();
    const auto outputs = model->forward(batch);
    fmt::print("outputs:\n");
    for (const auto& [name, t] : outputs) fmt::print("  {:<20} {} {}\n", name, c10::str(t.sizes()), c10::toString(t.scalar_type()));
  });
}

}  // namespace facet::cli
