// LoRA adapters in Hugging Face PEFT's on-disk layout, so a Facet fine-tune is used from Python
// (PeftModel.from_pretrained(base, dir)) and PEFT adapters are used in Facet:
//   <dir>/adapter_model.safetensors   lora_A / lora_B weights named base_model.model.<module>.lora_A.weight
//   <dir>/adapter_config.json         {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules", ...}
// Facet's LoRA parameters already carry PEFT's names minus the `base_model.model.` prefix
// (adapter.h), so the files are a renaming; base weights are never written.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace facet::models {

struct PeftSaveOptions {
  std::string base_model_name_or_path;  // recorded in adapter_config.json
  std::string task_type = "CAUSAL_LM";
};

// Writes every LoRA adapter of `model` (all must share rank, alpha and dropout). Returns the
// number of tensors written. An error when the model has no LoRA adapter.
int64_t save_peft_adapter(torch::nn::Module& model, const std::filesystem::path& dir, const PeftSaveOptions& options = {});

// Reads adapter_config.json, attaches LoRA with its rank, alpha, dropout and target_modules (a list
// of names matched as PEFT matches them: the whole module name or its dotted tail), then loads the
// weights; every adapter tensor must find its layer and every attached layer its tensors. Returns
// the adapted layers' names.
std::vector<std::string> load_peft_adapter(torch::nn::Module& model, const std::filesystem::path& dir);

}  // namespace facet::models
