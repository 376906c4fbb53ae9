// The vision-language experiment files as the trainer builds them: EmoLA's parameter groups (LoRA and
// prior projector at 1e-4, the mm_projector at 2e-5, everything else frozen) and LiteGPT's (LoRA and
// projector only), from the test-size variants of experiments/vlm/*.yaml.
#include "core/config.h"
#include "models/build.h"
#include "tests/support/paths.h"
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

using namespace facet;

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

}  // namespace
