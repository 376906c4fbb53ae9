// `facet summary CONFIG [key=value ...]`: the model's module tree with parameter counts (total,
// trainable, per module) and the shapes of its outputs for a batch of the configured data.
// LibTorch modules have no forward hooks, so shapes are shown for the model's outputs, not per layer.
#include "core/config.h"
#include "data/dataset.h"
#include "data/pack.h"
#include "models/model.h"
#include "tools/cli/commands.h"

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

}  // namespace

void add_summary_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int depth = 2;
    int batch = 2;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("summary", "Print a model's module tree, parameter counts and output shapes");
  cmd->add_option("config", args->config, "Experiment config (YAML)")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", args->overrides, "Dotted overrides");
  cmd->add_option("--depth", args->depth, "Module tree depth (default 2)");
  cmd->add_option("--batch", args->batch, "Samples in the probe batch (default 2)");
  cmd->callback([args] {
    Config config = Config::load(args->config, args->overrides);
    config.consume();  // summary reads only part of an experiment; the rest is not a typo
    auto model = models::model_registry().create(config.at("model"));
    fmt::print("{:<48} {:>14}\n", "module", "parameters");
    print_tree(*model, "model", 0, args->depth);
    const Counts c = count(*model);
    fmt::print("\ntotal parameters:     {}\ntrainable parameters: {}\nnon-trainable:        {}\n", grouped(c.total),
               grouped(c.trainable), grouped(c.total - c.trainable));
    const Config data = config.at("data");
    auto dataset = data::open_dataset(data, data.get<std::string>("train_split", "train"));
    std::vector<data::Sample> samples;
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < std::min<int64_t>(args->batch, dataset->size()); ++i) {
      samples.push_back(dataset->get(i, 0));
      indices.push_back(i);
    }
    const auto batch = data::collate(std::move(samples), std::move(indices), dataset->padding());
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
