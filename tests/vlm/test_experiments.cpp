// The vision-language experiment files as the trainer builds them: EmoLA's parameter groups (LoRA and
// prior projector at 1e-4, the mm_projector at 2e-5, everything else frozen) and LiteGPT's (LoRA and
// projector only), from the test-size variants of experiments/vlm/*.yaml; every published file built
// on the meta device (`facet summary --meta`).
#include "core/config.h"
#include "models/build.h"
#include "models/vlm/litegpt.h"
#include "models/vlm/llava.h"
#include "tests/support/paths.h"
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

namespace facet::test_experiments {


namespace {

Config experiment(const std::string& name) {
  return Config::load(std::filesystem::path(facet::test_support::kSourceDir) / "experiments/vlm/tiny" / name);
}

// lr -> number of parameters trained at it.
std::map<double, int64_t> parameters_by_lr(const std::vector<train::GroupSpec>& groups) {
  std::map<double, int64_t> out;
  for (const auto& g : groups)
    for (const auto& p : g.params) out[g.lr] += p.numel();
  return out;
}

TEST(VlmExperiments, EmolaTrainsLoraAndPriorAt1e4AndTheMmProjectorAt2e5) {
  const auto c = experiment("emola.yaml");
  auto model = models::build_model(c.at("model"));
  const auto groups = train::make_param_groups(c.at("optim"), *model);
  const auto by_lr = parameters_by_lr(groups);
  ASSERT_EQ(by_lr.size(), 2u);
  // 2 layers x r 128 x (4 x 64 + 3 x 96) LoRA + 212 -> 32 -> 32 prior projector.
  EXPECT_EQ(by_lr.begin()->second, 2112);          // mm_projector (32 -> 32 -> 32), the smaller rate
  EXPECT_NEAR(by_lr.begin()->first, 2e-5, 1e-12);
  EXPECT_EQ(by_lr.rbegin()->second, 139264 + 7872);
  EXPECT_NEAR(by_lr.rbegin()->first, 1e-4, 1e-12);
  for (const auto& p : model->named_parameters()) {
    const std::string& n = p.key();
    const bool should_train = n.find("lora_") != std::string::npos || n.starts_with("multi_modal_projector.") ||
                              n.starts_with("landmark_projector.");
    EXPECT_EQ(p.value().requires_grad(), should_train) << n;
  }
}

TEST(VlmExperiments, LiteGptTrainsLoraOnQVAndTheProjector) {
  const auto c = experiment("litegpt.yaml");
  auto model = models::build_model(c.at("model"));
  const auto groups = train::make_param_groups(c.at("optim"), *model);
  const auto by_lr = parameters_by_lr(groups);
  ASSERT_EQ(by_lr.size(), 1u);
  EXPECT_NEAR(by_lr.begin()->first, 1e-5, 1e-15);
  EXPECT_EQ(by_lr.begin()->second, 2 * 2 * 64 * 64 + 9296);
  std::set<std::string> lora_layers;
  for (const auto& p : model->named_parameters()) {
    const std::string& n = p.key();
    const bool should_train = n.find("lora_") != std::string::npos || n.starts_with("projector.");
    EXPECT_EQ(p.value().requires_grad(), should_train) << n;
    if (n.find("lora_A") != std::string::npos) lora_layers.insert(n.substr(0, n.find(".lora_A")));
  }
  EXPECT_EQ(lora_layers, (std::set<std::string>{"language_model.model.layers.0.self_attn.q_proj", "language_model.model.layers.0.self_attn.v_proj",
                                                "language_model.model.layers.1.self_attn.q_proj", "language_model.model.layers.1.self_attn.v_proj"}));
}

int64_t count(const torch::nn::Module& m, bool trainable_only = false) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// The published sizes on the meta device, as `facet summary --meta` builds them: shapes and counts, no
// memory — LibTorch's own layers included (LiteGPT's timm ViT has LibTorch Conv2d and LayerNorms,
// whose CPU tensors set_data cannot turn into meta ones).
TEST(VlmExperiments, EveryPublishedConfigBuildsOnTheMetaDevice) {
  const std::filesystem::path dir = std::filesystem::path(facet::test_support::kSourceDir) / "experiments/vlm";
  std::map<std::string, int64_t> totals;
  // (face_mllm_lora.yaml is a part the Face-MLLM stages include, not an experiment.)
  for (const char* file : {"llava15_7b.yaml", "emola.yaml", "emola_au.yaml", "face_mllm.yaml", "face_mllm_stage1.yaml", "face_mllm_stage2.yaml",
                           "face_mllm_stage3.yaml", "litegpt.yaml", "litegpt_stage1.yaml", "litegpt_stage2.yaml"}) {
    SCOPED_TRACE(file);
    Config c = Config::load(dir / file);
    if (c.has("model.generation")) c.set("model.generation", "~");  // its tokenizer file is not here
    auto model = models::build_model(c.at("model"), {torch::kBFloat16, /*defer_init=*/true, torch::Device("meta")});
    for (const auto& p : model->named_parameters()) EXPECT_TRUE(p.value().is_meta()) << p.key();
    totals[file] = count(*model);
    if (std::string(file).starts_with("litegpt")) {
      auto& lite = dynamic_cast<models::vlm::LiteGptModel&>(*model);
      EXPECT_TRUE(lite.biomedclip->patch_proj->weight.is_meta());  // the layer's own handle follows its registry
      EXPECT_TRUE(lite.biomedclip->norm->weight.is_meta());
      EXPECT_EQ(count(*lite.biomedclip), 85798656);   // timm ViT-B/16 without head (BiomedCLIP's trunk)
      EXPECT_EQ(count(*lite.pubmedclip), 87456000);   // CLIPVisionModel ViT-B/32 (post-layernorm included)
      EXPECT_EQ(count(*lite.pubmedclip), models::vlm::clip_vision_parameters(lite.options().pubmedclip));
      EXPECT_EQ(count(*lite.biomedclip, true) + count(*lite.pubmedclip, true), 0);  // frozen
      EXPECT_EQ(count(*lite.projector), 44705280);    // 3840 -> 5632 -> 4096
      int64_t lora = 0;
      for (const auto& p : model->named_parameters())
        if (p.key().find("lora_") != std::string::npos) lora += p.value().numel();
      EXPECT_EQ(lora, 33554432);  // r 64 on q, v of 32 layers
      EXPECT_EQ(lite.language_model().config().hidden_size, 4096);
    }
  }
  // Llama-2-7B (6,738,415,616) + the towers + projector + LoRA; LLaVA-1.5-7B (7,062,902,784) and
  // EmoLA's prior projector (17,653,760) and LoRA r = 128 on the seven projections (319,815,680).
  EXPECT_EQ(totals["litegpt.yaml"], 6989929984);
  EXPECT_EQ(totals["litegpt_stage1.yaml"], totals["litegpt.yaml"]);
  EXPECT_EQ(totals["litegpt_stage2.yaml"], totals["litegpt.yaml"]);
  EXPECT_EQ(totals["llava15_7b.yaml"], 7062902784);
  EXPECT_EQ(totals["emola.yaml"], 7062902784 + 17653760 + 319815680);
  EXPECT_EQ(totals["emola_au.yaml"], totals["emola.yaml"]);
}

}  // namespace

}  // namespace facet::test_experiments
