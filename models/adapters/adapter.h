// Post-build adapters: layers wrapped after the model is built, chosen in the config rather than in
// the model's code (LoRA for the vision-language models, EmoLA, Face-MLLM):
//
//   model:
//     name: vit
//     adapters:
//       - {name: lora, targets: ["blocks.*.attn.qkv", "blocks.*.attn.proj"], rank: 8, alpha: 16, dropout: 0.0}
//
// Each entry's `targets` are globs over module names ('*' = any run of characters within one
// dotted component, '**' = across components), matched against the whole name or any dotted tail
// of it (PEFT's target_modules rule: "attn.qkv" matches vit.blocks.3.attn.qkv). Every matched module
// must be a models::Linear (layers/linear.h); a pattern that matches nothing, or matches another
// kind of module, is an error naming the config key and the nearest Linear names. `freeze_base`
// (default true) sets requires_grad false on every adapted Linear's own weight and bias.
//
// An adapter registers its parameters on the Linear it wraps, so they are named under the layer's
// path (LoRA: `<path>.lora_A.weight`, `<path>.lora_B.weight`, PEFT's adapter_model.safetensors names
// without its `base_model.model.` prefix), and the base weights keep their names: every checkpoint
// of the un-adapted model still loads. More adapters come by one registration:
//
//   FACET_REGISTER(adapter_registry(), "ia3", "(IA)^3 scaling vectors", [](const Config& c) {
//     return std::make_shared<const Ia3>(Ia3Options::from(c)); });
#pragma once

#include "core/registry.h"
#include "models/layers/linear.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::models {

// What a registry entry builds from its config node: attaches adapters to Linear layers.
class Adapter {
 public:
  virtual ~Adapter() = default;
  // Attaches one LinearAdapter to `linear` (named `path` in the model).
  virtual void attach(LinearImpl& linear, const std::string& path) const = 0;
};

using AdapterRegistry = Registry<std::shared_ptr<const Adapter>>;
AdapterRegistry& adapter_registry();

struct AppliedAdapters {
  std::string name;                 // "lora"
  std::vector<std::string> layers;  // the Linear layers it wraps, in module order
};

// Applies `list` (model.adapters) to `model`, in order; errors name the entry's file:line and key.
std::vector<AppliedAdapters> apply_adapters(torch::nn::Module& model, const Config& list);

// Folds every adapter of the model into its Linear's weight (for inference, or export as plain
// weights), and takes it out again.
void merge_adapters(torch::nn::Module& model);
void unmerge_adapters(torch::nn::Module& model);

// '*' within a dotted component, '**' across components; the whole name must match.
bool glob_match(std::string_view pattern, std::string_view name);

// --- LoRA (Hu et al. 2021), as PEFT builds it ------------------------------------------------------
// y = W x + b + (alpha / rank) * B A dropout(x); A [rank, in] kaiming-uniform (a = sqrt(5)), B
// [out, rank] zeros, so the adapted model starts equal to the base one. Built in the base weight's
// dtype and device.
struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;
  static LoraOptions from(const Config& c);
};

class LoraAdapter : public LinearAdapter {
 public:
  LoraAdapter(LinearImpl& host, const LoraOptions& options);
  std::string kind() const override { return "lora"; }
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor y, bool training) override;
  void merge() override;
  void unmerge() override;
  bool merged() const override { return merged_; }
  double scaling() const { return options_.alpha / static_cast<double>(options_.rank); }
  const LoraOptions& options() const { return options_; }

  Linear lora_A{nullptr}, lora_B{nullptr};  // registered on the host

 private:
  torch::Tensor delta() const;  // scaling * B A, in the host weight's dtype
  LinearImpl& host_;
  LoraOptions options_;
  bool merged_ = false;
};

}  // namespace facet::models
