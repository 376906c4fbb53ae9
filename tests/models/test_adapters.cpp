// Post-build adapters (models/adapters): LoRA on the ViT's Linear layers from `model.adapters` —
// PEFT's names and initialisation, the output unchanged at the start, only the adapters training,
// merge / unmerge, and the errors of targets that match nothing or the wrong kind of layer.
#include "core/safetensors.h"
#include "models/adapters/adapter.h"
#include "models/build.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::models::test_adapters {
namespace {

using ::testing::HasSubstr;
using test_support::message_of;
using Shape = std::vector<int64_t>;

const std::string kVit = "name: vit, image_size: 32, patch_size: 8, embed_dim: 48, depth: 2, num_heads: 4, num_classes: 3";

std::shared_ptr<Model> vit_with(const std::string& adapters) {
  return build_model(Config::parse("{" + kVit + ", adapters: " + adapters + "}", "m.yaml"));
}

data::Batch batch_of(const torch::Tensor& images) {
  data::Batch b;
  b.fields["image"] = images;
  b.indices = torch::arange(images.size(0));
  return b;
}

TEST(Lora, PeftNamesAndShapesAndTheOutputUnchangedAtInit) {
  torch::manual_seed(1);
  auto base = build_model(Config::parse("{" + kVit + "}"));
  torch::manual_seed(1);
  auto adapted = vit_with("[{name: lora, targets: ['blocks.*.attn.qkv', 'blocks.*.attn.proj'], rank: 4, alpha: 8}]");
  const auto names = safetensors::state_dict(*adapted);
  EXPECT_EQ(names.at("vit.blocks.1.attn.qkv.lora_A.weight").sizes(), (Shape{4, 48}));    // [r, in]
  EXPECT_EQ(names.at("vit.blocks.1.attn.qkv.lora_B.weight").sizes(), (Shape{144, 4}));   // [out, r]
  EXPECT_EQ(names.at("vit.blocks.0.attn.proj.lora_B.weight").sizes(), (Shape{48, 4}));
  EXPECT_FALSE(names.contains("vit.blocks.0.mlp.fc1.lora_A.weight"));
  EXPECT_EQ(names.size(), safetensors::state_dict(*base).size() + 8);  // 4 layers x (A, B)
  EXPECT_TRUE(torch::equal(names.at("vit.blocks.0.attn.qkv.lora_B.weight"), torch::zeros({144, 4})));
  EXPECT_GT(names.at("vit.blocks.0.attn.qkv.lora_A.weight").abs().sum().item<float>(), 0);  // kaiming, as PEFT
  // PEFT's adapter_model.safetensors names these base_model.model.<path>.lora_A.weight: the same tails.
  for (const auto& [name, t] : names)
    if (name.find("lora_") != std::string::npos) {
      EXPECT_THAT(name, ::testing::MatchesRegex(R"(vit\.blocks\.[01]\.attn\.(qkv|proj)\.lora_[AB]\.weight)"));
    }
  // Base weights frozen, the adapters not; the base weights keep their names and values.
  EXPECT_FALSE(names.at("vit.blocks.0.attn.qkv.weight").requires_grad());
  EXPECT_FALSE(names.at("vit.blocks.0.attn.qkv.bias").requires_grad());
  EXPECT_TRUE(names.at("vit.blocks.0.mlp.fc1.weight").requires_grad());
  EXPECT_TRUE(names.at("vit.blocks.0.attn.qkv.lora_A.weight").requires_grad());
  for (const auto& [name, t] : safetensors::state_dict(*base)) EXPECT_TRUE(torch::equal(names.at(name), t)) << name;
  base->eval();
  adapted->eval();
  const auto b = batch_of(torch::randn({2, 3, 32, 32}));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(adapted->forward(b).at("logits"), base->forward(b).at("logits")));  // B = 0
}

TEST(Lora, OnlyTheAdaptersTrainAndTheLossFalls) {
  torch::manual_seed(2);
  auto model = vit_with("[{name: lora, targets: ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2'], rank: 8, alpha: 16, dropout: 0.1}]");
  // What PEFT's get_peft_model freezes besides (optim.freeze in a config): everything but the adapters.
  std::vector<torch::Tensor> trained;
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find(".lora_") == std::string::npos) p.value().set_requires_grad(false);
    if (p.value().requires_grad()) trained.push_back(p.value());
    before[p.key()] = p.value().detach().clone();
  }
  EXPECT_EQ(trained.size(), 16u);
  const auto images = torch::randn({12, 3, 32, 32});
  const auto labels = torch::arange(12) % 3;
  torch::optim::Adam adam(trained, torch::optim::AdamOptions(3e-3));
  model->train();
  float first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    adam.zero_grad();
    const auto loss = torch::cross_entropy_loss(model->forward(batch_of(images)).at("logits"), labels);
    loss.backward();
    adam.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
  for (const auto& p : model->named_parameters()) {
    const bool lora = p.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(!torch::equal(p.value(), before.at(p.key())), lora) << p.key();
  }
}

TEST(Lora, MergeAndUnmergeRoundTrip) {
  torch::manual_seed(3);
  auto model = vit_with("[{name: lora, targets: ['blocks.*.attn.qkv', 'blocks.*.mlp.fc2'], rank: 4, alpha: 4}]");
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.05);  // a trained adapter
  }
  model->eval();
  const auto b = batch_of(torch::randn({2, 3, 32, 32}));
  torch::NoGradGuard no_grad;
  const auto adapted = model->forward(b).at("logits");
  const auto base_weight = safetensors::state_dict(*model).at("vit.blocks.0.attn.qkv.weight").clone();
  merge_adapters(*model);
  EXPECT_FALSE(torch::equal(safetensors::state_dict(*model).at("vit.blocks.0.attn.qkv.weight"), base_weight));
  EXPECT_TRUE(torch::allclose(model->forward(b).at("logits"), adapted, 1e-4, 1e-5));  // without the low-rank path
  unmerge_adapters(*model);
  EXPECT_TRUE(torch::allclose(safetensors::state_dict(*model).at("vit.blocks.0.attn.qkv.weight"), base_weight, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(model->forward(b).at("logits"), adapted, 1e-4, 1e-5));
}

TEST(Lora, TargetErrorsNameTheKeyAndTheNearestLayers) {
  EXPECT_THAT(message_of([] { vit_with("[{name: lora, targets: ['blocks.*.attn.qkvv']}]"); }),
              HasSubstr("m.yaml:1: adapters[0].targets: \"blocks.*.attn.qkvv\" matches no layer of the model; nearest Linear layers: "
                        "vit.blocks.0.attn.qkv"));
  EXPECT_THAT(message_of([] { vit_with("[{name: lora, targets: ['blocks.*.attn']}]"); }),
              HasSubstr("adapters[0].targets: \"blocks.*.attn\" matches vit.blocks.0.attn (facet::models::ViTAttentionImpl), which is "
                        "not a models::Linear and cannot be adapted; Linear layers near it: vit.blocks.0.attn.qkv"));
  EXPECT_THAT(message_of([] { vit_with("[{name: lorra, targets: ['attn.qkv']}]"); }),
              HasSubstr("unknown adapter \"lorra\" (did you mean \"lora\"?)"));
  EXPECT_THAT(message_of([] { vit_with("[{name: lora, targets: ['attn.qkv'], rank: 0}]"); }), HasSubstr("adapters[0].rank: expected a positive rank"));
  // freeze_base: false keeps the base trainable.
  auto open = vit_with("[{name: lora, targets: ['attn.qkv'], freeze_base: false}]");
  EXPECT_TRUE(safetensors::state_dict(*open).at("vit.blocks.0.attn.qkv.weight").requires_grad());
  EXPECT_TRUE(glob_match("blocks.*.attn.qkv", "blocks.11.attn.qkv"));
  EXPECT_FALSE(glob_match("blocks.*.qkv", "blocks.1.attn.qkv"));  // '*' stays within a component
  EXPECT_TRUE(glob_match("blocks.**.qkv", "blocks.1.attn.qkv"));
}

}  // namespace
}  // namespace facet::models::test_adapters
