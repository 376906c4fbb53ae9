// Vision towers: CLIP (transformers CLIPVisionModel) and BiomedCLIP's timm ViT-B/16, parity with the
// reference libraries on tiny random configurations (tools/golden/vlm_golden.py) and parameter
// counts at the published configurations.
#include "core/error.h"
#include "core/safetensors.h"
#include "models/backbones/backbone.h"
#include "models/layers/construction.h"
#include "models/vlm/clip_vision.h"
#include "models/weights/init_weights.h"
#include "tests/support/paths.h"
#include "tests/support/tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::test_towers {

namespace fs = std::filesystem;
using namespace facet::models;
using namespace facet::models::vlm;
using facet::test_support::expect_close;
using facet::test_support::parameter_count;

namespace {

fs::path fixture(const std::string& name) { return fs::path(facet::test_support::kSourceDir) / "tests/fixtures/vlm" / name; }

void load(torch::nn::Module& m, const fs::path& path, const std::string& convert, const std::string& extra = "") {
  init_weights(m, Config::parse("w:\n  - {path: '" + path.string() + "', convert: " + convert + extra + "}", "test").at("w"));
}

ClipVisionOptions tiny_clip() {
  ClipVisionOptions o;
  o.image_size = 32;
  o.patch_size = 8;
  o.hidden_size = 32;
  o.intermediate_size = 64;
  o.num_hidden_layers = 3;
  o.num_attention_heads = 4;
  return o;
}

TEST(ClipVision, MatchesTransformersCLIPVisionModel) {
  auto tower = ClipVision(tiny_clip());
  load(*tower, fixture("clip_tiny/weights.safetensors"), "hf_clip_vision");
  safetensors::File golden(fixture("clip_tiny/golden.safetensors"));
  EXPECT_EQ(parameter_count(*tower), std::stoll(golden.metadata().at("num_parameters")));
  torch::NoGradGuard no_grad;
  const auto x = golden.tensor("pixel_values");
  const auto out = tower->forward(x);
  expect_close(out.last_hidden_state, golden.tensor("last_hidden_state"), 1e-5, "clip last_hidden_state");
  expect_close(out.pooler_output, golden.tensor("pooler_output"), 1e-5, "clip pooler_output");
  // LLaVA's selection: penultimate hidden state, CLS dropped.
  auto o = tiny_clip();
  o.feature_layer = -2;
  auto llava_tower = ClipVision(o);
  load(*llava_tower, fixture("clip_tiny/weights.safetensors"), "hf_clip_vision");
  const auto f = llava_tower->features(x);
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{2, 16, 32}));
  expect_close(f, golden.tensor("hidden_m2").slice(1, 1), 1e-5, "clip hidden_states[-2] patches");
  // As a backbone: the same tokens as a [B, D, 4, 4] map, row-major.
  const auto maps = llava_tower->forward_features(x);
  const auto& map = maps.at("layer2");
  EXPECT_EQ(map.sizes(), (std::vector<int64_t>{2, 32, 4, 4}));
  EXPECT_TRUE(torch::equal(map.flatten(2).transpose(1, 2), f));
  o.keep_cls = true;
  EXPECT_EQ(o.num_feature_tokens(), 17);
}

TEST(ClipVision, ParameterCountsAtPublishedConfigurations) {
  safetensors::File golden(fixture("clip_tiny/golden.safetensors"));
  ConstructionScope scope(torch::kBFloat16, /*defer_init=*/true);  // pages never touched (LibTorch LayerNorm cannot move to meta)
  auto large = ClipVision(ClipVisionOptions::vit_l14_336());
  EXPECT_EQ(parameter_count(*large), 303507456);  // transformers CLIPVisionModel, post-layernorm included
  EXPECT_EQ(parameter_count(*large), std::stoll(golden.metadata().at("vit_l14_336_parameters")));
  EXPECT_EQ(large->options().num_feature_tokens(), 576);
  auto base = ClipVision(ClipVisionOptions::vit_b32());
  EXPECT_EQ(parameter_count(*base), std::stoll(golden.metadata().at("vit_b32_parameters")));
  EXPECT_EQ(parameter_count(*base), 87456000);
  EXPECT_EQ(base->options().num_feature_tokens(), 49);
}

TEST(ClipVision, RegisteredBackboneAndBadOptions) {
  auto b = backbone_registry().create(Config::parse("{name: clip_vit, preset: vit_b32, image_size: 64, num_hidden_layers: 2, hidden_size: 32, "
                                                     "intermediate_size: 64, num_attention_heads: 4}"));
  const auto maps = b->forward_features(torch::randn({1, 3, 64, 64}));
  EXPECT_EQ(maps.at("layer2").sizes(), (std::vector<int64_t>{1, 32, 2, 2}));
  EXPECT_THAT([] { ClipVisionOptions::from(Config::parse("{preset: vit_h14}")); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("unknown CLIP preset 'vit_h14'")));
  EXPECT_THAT([] { ClipVisionOptions::from(Config::parse("{num_hidden_layers: 2, feature_layer: -4}")); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("feature_layer -4 is outside the 3 hidden states")));
  auto tower = ClipVision(tiny_clip());
  EXPECT_THAT([&] { tower->features(torch::zeros({1, 3, 64, 64})); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("expected pixels [B, 3, 32, 32]")));
}

TEST(BiomedClipVit, MatchesTimmForwardFeatures) {
  auto o = biomedclip_vit_options();
  o.image_size = 32;
  o.patch_size = 8;
  o.embed_dim = 32;
  o.depth = 2;
  o.num_heads = 4;
  auto vit = ViT(o);
  load(*vit, fixture("timm_tiny/weights.safetensors"), "timm_vit");
  safetensors::File golden(fixture("timm_tiny/golden.safetensors"));
  torch::NoGradGuard no_grad;
  const auto tokens = vit->forward_tokens(golden.tensor("x")).tokens;
  expect_close(tokens, golden.tensor("features"), 1e-5, "timm forward_features");
  // Registered backbone at the published size: timm's vit_base_patch16_224 without its head.
  ConstructionScope scope(torch::kBFloat16, /*defer_init=*/true);  // pages never touched (LibTorch LayerNorm cannot move to meta)
  auto b16 = backbone_registry().create(Config::parse("{name: biomedclip_vit}"));
  EXPECT_EQ(parameter_count(*b16), std::stoll(golden.metadata().at("vit_b16_parameters")));
  EXPECT_EQ(parameter_count(*b16), 85798656);
}

}  // namespace

}  // namespace facet::test_towers
