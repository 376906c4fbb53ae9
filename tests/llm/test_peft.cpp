// LoRA adapters in PEFT's layout: PEFT's adapter (tools/golden/peft_golden.py) loaded into Facet with
// the same logits, and Facet's adapter loaded by PEFT in Python (through FACET_PYTHON) with the same logits.
#include "core/file_io.h"
#include "core/safetensors.h"
#include "models/adapters/adapter.h"
#include "models/adapters/peft.h"
#include "models/llm/llama.h"
#include "../support/scratch.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>

namespace facet::test_peft {

namespace fs = std::filesystem;
using namespace facet::models;
using namespace facet::models::llm;

namespace {

fs::path fixture(const std::string& name) { return fs::path(facet::test_support::kSourceDir) / "tests/fixtures/llm" / name; }

torch::Tensor logits_of(LlamaForCausalLM& model, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  LlamaInputs in;
  in.input_ids = ids;
  return model.forward_logits(in);
}

TEST(Peft, PeftAdapterLoadsIntoFacetWithTheSameLogits) {
  auto model = from_pretrained(fixture("tiny_llama_mha"), {.dtype = torch::kFloat32});
  const auto layers = load_peft_adapter(*model, fixture("peft_lora"));
  EXPECT_EQ(layers.size(), 6U);  // 2 layers x q_proj, v_proj, down_proj
  safetensors::File expected(fixture("peft_lora") / "expected.safetensors");
  const auto logits = logits_of(*model, expected.tensor("input_ids"));
  const double err = (logits - expected.tensor("logits")).abs().max().item<double>();
  EXPECT_LT(err, 1e-5) << err;
  // The adapters' sizes; merging folds them in without changing the outputs.
  int64_t trainable = 0;
  for (const auto& item : model->named_parameters())
    if (item.key().find("lora_") != std::string::npos && item.value().requires_grad()) trainable += item.value().numel();
  EXPECT_EQ(trainable, 2 * (2 * 4 * (32 + 32) + 4 * (64 + 32)));
  merge_adapters(*model);
  EXPECT_LT((logits_of(*model, expected.tensor("input_ids")) - logits).abs().max().item<double>(), 1e-5);
  unmerge_adapters(*model);
}

TEST(Peft, FacetAdapterLoadsIntoPeftWithTheSameLogits) {
  auto model = from_pretrained(fixture("tiny_llama_gqa"), {.dtype = torch::kFloat32});
  apply_adapters(*model, Config::parse("adapters: [{name: lora, targets: [q_proj, k_proj, o_proj, gate_proj], rank: 2, alpha: 6, dropout: 0.05}]").at("adapters"));
  {
    torch::NoGradGuard g;
    torch::manual_seed(3);
    for (auto& item : model->named_parameters())
      if (item.key().find("lora_") != std::string::npos) item.value().copy_(0.3 * torch::randn(item.value().sizes()));
  }
  const auto dir = test_support::scratch_dir("llm", "peft_out");
  EXPECT_EQ(save_peft_adapter(*model, dir / "adapter", {.base_model_name_or_path = "tiny_llama_gqa"}), 16);
  const auto config = nlohmann::json::parse(read_file(dir / "adapter" / "adapter_config.json"));
  EXPECT_EQ(config["r"], 2);
  EXPECT_EQ(config["lora_alpha"], 6.0);
  EXPECT_EQ(config["target_modules"], nlohmann::json({"gate_proj", "k_proj", "o_proj", "q_proj"}));
  safetensors::File written(dir / "adapter" / "adapter_model.safetensors");
  EXPECT_THAT(written.names(), ::testing::Contains("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight"));

  const auto ids = torch::randint(3, 96, {2, 11}, torch::kLong);
  const auto logits = logits_of(*model, ids);
  // Back into a fresh Facet model.
  auto fresh = from_pretrained(fixture("tiny_llama_gqa"), {.dtype = torch::kFloat32});
  load_peft_adapter(*fresh, dir / "adapter");
  EXPECT_TRUE(torch::equal(logits_of(*fresh, ids), logits));
  // And into PEFT.
  safetensors::save(dir / "inputs.safetensors", {{"input_ids", ids}, {"logits", logits}});
  const std::string cmd = std::string(facet::test_support::kPython) + " " + facet::test_support::source_path("tools/golden/peft_golden.py") + " check " +
                          fixture("tiny_llama_gqa").string() + " " + (dir / "adapter").string() + " " +
                          (dir / "inputs.safetensors").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(Peft, ErrorsNameTheFileAndKey) {
  const auto dir = test_support::scratch_dir("llm", "peft_bad");
  auto model = from_pretrained(fixture("tiny_llama_mha"), {.dtype = torch::kFloat32});
  EXPECT_THAT(test_support::message_of([&] { save_peft_adapter(*model, dir / "none"); }), ::testing::HasSubstr("has no LoRA adapter"));
  fs::create_directories(dir / "a");
  write_file_atomic(dir / "a" / "adapter_config.json", R"({"peft_type": "LORA", "r": 4, "target_modules": "q_proj|v_proj"})");
  EXPECT_THAT(test_support::message_of([&] { load_peft_adapter(*model, dir / "a"); }),
              ::testing::HasSubstr("adapter_config.json: target_modules: expected a list of module names"));
  write_file_atomic(dir / "a" / "adapter_config.json", R"({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "use_dora": true})");
  EXPECT_THAT(test_support::message_of([&] { load_peft_adapter(*model, dir / "a"); }), ::testing::HasSubstr("use_dora: not supported"));
}

}  // namespace

}  // namespace facet::test_peft
