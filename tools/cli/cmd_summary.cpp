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
#include "models/llm/llama.h"
#include "models/llm/memory.h"
#include "models/model.h"
#include "models/weights/init_weights.h"
#include "tools/cli/commands.h"
#include "train/optimizer.h"

#include <algorithm>
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
    bool defer_init = false, weights = false, no_forward = false, meta = false;
    int64_t seq_len = 0, micro_batch = 1;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("summary", "Print a model's module tree, parameter counts and output shapes");
  cmd->add_option("config", args->config, "Experiment config (YAML)")->required();
  cmd->add_option("overrides", args->overrides, "Dotted overrides");
  cmd->add_option("--depth", args->depth, "Module tree depth (default 2)");
  cmd->add_option("--batch", args->batch, "Samples in the probe batch (default 2)");
  cmd->add_option("--dtype", args->dtype, "Build the model in float32 (default), bfloat16 or float16");
  cmd->add_flag("--defer-init", args->defer_init, "Build without random initialisation (every tensor must then come from --weights)");
  cmd->add_flag("--weights", args->weights, "Apply train.init_weights; report the load time and peak resident memory");
  cmd->add_flag("--no-forward", args->no_forward, "Skip the probe batch (no data needed)");
  cmd->add_flag("--meta", args->meta, "Build on the meta device: shapes and counts only, no memory (implies --no-forward)");
  cmd->add_option("--seq-len", args->seq_len, "Language models: estimate training memory per GPU at this sequence length");
  cmd->add_option("--micro-batch", args->micro_batch, "Language models: sequences per GPU step for the estimate (default 1)");
  cmd->callback([args] {
    Config config = Config::load(args->config, args->overrides);
    config.consume();  // summary reads only part of an experiment; the rest is not a typo
    // A vision-language model's evaluation-time generation (model.generation) needs its tokenizer file,
    // which a summary has no use for: the probe shows the training outputs (logits) instead.
    if (config.has("model.generation")) config.set("model.generation", "~");
    const auto start = std::chrono::steady_clock::now();
    models::ModelBuildOptions build{models::parse_dtype(args->dtype, "--dtype"), args->defer_init};
    if (args->meta) {
      if (args->weights) fail("--meta and --weights exclude each other (the meta device holds no values)");
      build.device = torch::Device("meta");
      build.defer_init = true;
    }
    auto model = models::build_model(config.at("model"), build);
    // What trains, as the optimiser will see it: optim.freeze patterns, and with optim.params only
    // what they select (the trainer freezes the rest).
    if (config.has("optim.freeze"))
      for (const auto& pattern : config.get<std::vector<std::string>>("optim.freeze"))
        for (auto& p : model->named_parameters())
          if (train::glob_match(pattern, p.key())) p.value().requires_grad_(false);
    if (config.has("optim.params")) {
      const auto selected = config.get<std::vector<std::string>>("optim.params");
      for (auto& p : model->named_parameters())
        if (std::none_of(selected.begin(), selected.end(), [&](const std::string& g) { return train::glob_match(g, p.key()); }))
          p.value().requires_grad_(false);
    }
    const double built = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (args->weights) {
      if (!config.has("train.init_weights")) fail("{}: --weights: the config has no train.init_weights", args->config);
      models::init_weights(*model, config.at("train.init_weights"));
      const double loaded = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("built in {:.1f} s, weights loaded in {:.1f} s more; peak resident memory {:.2f} GiB\n\n", built,
                 loaded - built, static_cast<double>(peak_resident_bytes()) / (1 << 30));
    } else if (args->defer_init && !args->meta) {
      models::check_initialized(*model, "--defer-init without --weights");
    }
    fmt::print("{:<48} {:>14}\n", "module", "parameters");
    print_tree(*model, "model", 0, args->depth);
    const Counts c = count(*model);
    fmt::print("\ntotal parameters:     {}\ntrainable parameters: {}\nnon-trainable:        {}\n", grouped(c.total),
               grouped(c.trainable), grouped(c.total - c.trainable));
    if (args->seq_len > 0) {
      auto* lm = dynamic_cast<models::llm::LlamaForCausalLM*>(model.get());
      if (!lm) fail("--seq-len: the memory estimate is for language models (model.name: llama)");
      models::llm::MemoryOptions mo;
      mo.seq_len = args->seq_len;
      mo.batch = args->micro_batch;
      mo.gradient_checkpointing = lm->model->gradient_checkpointing;
      mo.loss_chunk_tokens = lm->loss_chunk_tokens;
      const auto m = models::llm::estimate_training_memory(*model, lm->config(), mo);
      fmt::print("\nestimated training memory per GPU (sequence {}, micro-batch {}, gradient checkpointing {}, AdamW):\n{}",
                 mo.seq_len, mo.batch, mo.gradient_checkpointing ? "on" : "off", m.table());
    }
    if (args->no_forward || args->meta) return;
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
    // Detections and generated text are per sample: one tensor or string each.
    for (const auto& [name, list] : outputs.ragged) {
      std::vector<std::string> shapes;
      for (const auto& t : list) shapes.push_back(t.defined() ? c10::str(t.sizes()) : "undefined");
      fmt::print("  {:<20} per sample: {}\n", name, join(shapes));
    }
    for (const auto& [name, list] : outputs.text) fmt::print("  {:<20} per sample: {} strings\n", name, list.size());
  });
}

}  // namespace facet::cli
