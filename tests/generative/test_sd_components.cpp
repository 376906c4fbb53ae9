// Stable Diffusion 1.x's networks: the UNet (diffusers UNet2DConditionModel), the VAE (diffusers
// AutoencoderKL) and the CLIP text tower (transformers CLIPTextModel) — parity with the reference
// libraries on tiny configurations of the same structure (tools/golden/diffusion_golden.py), the
// parameter counts of SD 1.5's published configuration, the options' errors, and the converters of
// models/generative/diffusers_weights.cpp (diffusers folders and the original single file).
#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "models/generative/autoencoder_kl.h"
#include "models/generative/unet2d_condition.h"
#include "models/layers/construction.h"
#include "models/vlm/clip_text.h"
#include "models/weights/init_weights.h"
#include "tests/support/paths.h"
#include "tests/support/tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::test_sd_components {

namespace fs = std::filesystem;
using namespace facet::models;
using namespace facet::models::generative;
using facet::models::vlm::ClipTextModel;
using facet::models::vlm::ClipTextOptions;
using facet::test_support::expect_close;
using facet::test_support::parameter_count;
using ::testing::HasSubstr;

namespace {

fs::path fixture(const std::string& name) { return fs::path(facet::test_support::kSourceDir) / "tests/fixtures/generative" / name; }

void load(torch::nn::Module& m, const fs::path& path, const std::string& convert) {
  init_weights(m, Config::parse("w:\n  - {path: '" + path.string() + "', convert: " + convert + "}", "test").at("w"));
}

int64_t metadata_count(const safetensors::File& f, const std::string& key) { return std::stoll(f.metadata().at(key)); }

// Parameters of a model built on the meta device: no memory, no initialisation of Facet's layers.
template <class Make>
int64_t count_on_meta(Make make) {
  ConstructionScope scope(torch::kFloat32, /*defer_init=*/true, torch::kMeta);
  auto model = make();
  return parameter_count(*model);
}

UNet2DConditionOptions tiny_unet() {
  UNet2DConditionOptions o;
  o.sample_size = 16;
  o.block_out_channels = {8, 16, 16};
  o.cross_attention = {true, true, false};
  o.layers_per_block = 2;
  o.attention_heads = {2};
  o.cross_attention_dim = 24;
  o.norm_num_groups = 4;
  return o;
}

AutoencoderKLOptions tiny_vae() {
  AutoencoderKLOptions o;
  o.block_out_channels = {8, 16, 16};
  o.layers_per_block = 1;
  o.norm_num_groups = 4;
  return o;
}

ClipTextOptions tiny_clip_text() {
  ClipTextOptions o;
  o.vocab_size = 100;
  o.max_position_embeddings = 16;
  o.hidden_size = 32;
  o.intermediate_size = 64;
  o.num_hidden_layers = 3;
  o.num_attention_heads = 4;
  return o;
}

}  // namespace

TEST(UNet2DCondition, MatchesDiffusers) {
  auto unet = UNet2DCondition(tiny_unet());
  load(*unet, fixture("unet_tiny/weights.safetensors"), "diffusers_unet");
  unet->eval();
  safetensors::File golden(fixture("unet_tiny/golden.safetensors"));
  EXPECT_EQ(parameter_count(*unet), metadata_count(golden, "num_parameters"));
  torch::NoGradGuard no_grad;
  const auto sample = golden.tensor("sample"), context = golden.tensor("encoder_hidden_states");
  expect_close(unet->forward(sample, golden.tensor("timesteps"), context), golden.tensor("out"), 1e-5, "unet out");
  // Fractional timesteps (samplers that interpolate them) go through the same sinusoids.
  expect_close(unet->forward(sample, golden.tensor("timesteps_float"), context), golden.tensor("out_float_t"), 1e-5,
               "unet out, float timesteps");
}

TEST(UNet2DCondition, Sd15HasThePublishedParameterCount) {
  safetensors::File golden(fixture("unet_tiny/golden.safetensors"));
  const int64_t n = count_on_meta([] { return UNet2DCondition(UNet2DConditionOptions::sd15()); });
  EXPECT_EQ(n, 859'520'964);
  EXPECT_EQ(n, metadata_count(golden, "sd15_parameters"));
}

TEST(UNet2DCondition, SizesNotAMultipleOfTheStrideFollowTheSkips) {
  torch::manual_seed(0);
  auto unet = UNet2DCondition(tiny_unet());
  torch::NoGradGuard no_grad;
  // 18 -> 9 -> 5 on the way down; upsampling goes back to 9 and 18, not 10 and 20.
  const auto out = unet->forward(torch::randn({1, 4, 18, 18}), torch::tensor({10}), torch::randn({1, 3, 24}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 4, 18, 18}));
  const auto scalar_t = unet->forward(torch::randn({2, 4, 8, 8}), torch::tensor(10), torch::randn({2, 3, 24}));
  EXPECT_EQ(scalar_t.sizes(), (std::vector<int64_t>{2, 4, 8, 8}));
}

TEST(UNet2DCondition, OptionsReadDiffusersConfigKeysAndNameBadOnes) {
  const auto o = UNet2DConditionOptions::from(Config::parse(
      "block_out_channels: [32, 64]\ndown_block_types: [CrossAttnDownBlock2D, DownBlock2D]\n"
      "up_block_types: [UpBlock2D, CrossAttnUpBlock2D]\nattention_head_dim: 4\nnorm_num_groups: 8\n",
      "unet.yaml"));
  EXPECT_EQ(o.cross_attention, (std::vector<bool>{true, false}));
  EXPECT_EQ(o.attention_heads, (std::vector<int64_t>{4}));
  try {
    UNet2DConditionOptions::from(Config::parse("down_block_types: [CrossAttnDownBlock2D, AttnDownBlock2D, DownBlock2D, DownBlock2D]\n", "u.yaml"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("u.yaml:1: down_block_types: unknown block type 'AttnDownBlock2D'"));
  }
  try {
    UNet2DConditionOptions::from(Config::parse("block_out_channels: [32, 64]\nnorm_num_groups: 8\nattention_head_dim: [2, 4, 8]\n", "u.yaml"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("attention_head_dim has 3 values for 2 blocks"));
  }
  try {
    UNet2DConditionOptions::from(Config::parse("up_block_types: [CrossAttnUpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D, UpBlock2D]\n", "u.yaml"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("up_block_types: the up blocks must mirror down_block_types"));
  }
}

TEST(AutoencoderKL, MatchesDiffusersWithEitherAttentionNaming) {
  safetensors::File golden(fixture("vae_tiny/golden.safetensors"));
  for (const char* file : {"vae_tiny/weights.safetensors", "vae_tiny/weights_old_attention_names.safetensors"}) {
    SCOPED_TRACE(file);
    auto vae = AutoencoderKL(tiny_vae());
    load(*vae, fixture(file), "diffusers_vae");
    EXPECT_EQ(parameter_count(*vae), metadata_count(golden, "num_parameters"));
    torch::NoGradGuard no_grad;
    const auto posterior = vae->encode(golden.tensor("x"));
    expect_close(posterior.mean, golden.tensor("mean"), 1e-5, "vae mean");
    expect_close(posterior.logvar, golden.tensor("logvar"), 1e-5, "vae logvar");
    expect_close(vae->decode(posterior.mean), golden.tensor("decoded"), 1e-5, "vae decode(mean)");
    expect_close(vae->decode(golden.tensor("z")), golden.tensor("decoded_from_z"), 1e-5, "vae decode(z)");
  }
}

TEST(AutoencoderKL, SdHasThePublishedParameterCountAndEightTimesSmallerLatents) {
  safetensors::File golden(fixture("vae_tiny/golden.safetensors"));
  const int64_t n = count_on_meta([] { return AutoencoderKL(AutoencoderKLOptions::sd()); });
  EXPECT_EQ(n, 83'653'863);
  EXPECT_EQ(n, metadata_count(golden, "sd15_parameters"));
  EXPECT_EQ(AutoencoderKLOptions::sd().downscale(), 8);
  EXPECT_DOUBLE_EQ(AutoencoderKLOptions::sd().scaling_factor, std::stod(golden.metadata().at("scaling_factor")));
}

TEST(ClipTextModel, MatchesTransformersCLIPTextModel) {
  auto text = ClipTextModel(tiny_clip_text());
  load(*text, fixture("clip_text_tiny/weights.safetensors"), "hf_clip_text");
  safetensors::File golden(fixture("clip_text_tiny/golden.safetensors"));
  EXPECT_EQ(parameter_count(*text), metadata_count(golden, "num_parameters"));
  torch::NoGradGuard no_grad;
  const auto ids = golden.tensor("input_ids");
  const auto out = text->forward(ids);
  expect_close(out.last_hidden_state, golden.tensor("last_hidden_state"), 1e-5, "clip text last_hidden_state");
  expect_close(out.pooler_output, golden.tensor("pooler_output"), 1e-5, "clip text pooler_output");
  expect_close(text->hidden_state(ids, -2), golden.tensor("hidden_state_m2"), 1e-5, "clip text hidden_states[-2]");
  // diffusers' clip_skip = 1: the penultimate state through the final norm.
  expect_close(text->encode_words(text->word_embeddings(ids), -2), golden.tensor("hidden_state_m2_normed"), 1e-5, "clip skip");
  // The word-embedding path (textual inversion, DETEX) is the same computation.
  expect_close(text->encode_words(text->word_embeddings(ids)), golden.tensor("last_hidden_state"), 1e-5, "encode_words");
}

TEST(ClipTextModel, Sd15HasThePublishedParameterCount) {
  safetensors::File golden(fixture("clip_text_tiny/golden.safetensors"));
  const int64_t n = count_on_meta([] { return ClipTextModel(ClipTextOptions::sd15()); });
  EXPECT_EQ(n, 123'060'480);
  EXPECT_EQ(n, metadata_count(golden, "sd15_parameters"));
}

// The original single-file checkpoint (LDM names, one file for all three networks, EMA copies and
// schedule buffers beside them) loads into the same tensors as diffusers' three folders.
TEST(SdSingleFile, LoadsTheLdmLayoutIntoUNetVaeAndTextTower) {
  struct Pipeline : torch::nn::Module {
    Pipeline() {
      unet = register_module("unet", UNet2DCondition(tiny_unet()));
      vae = register_module("vae", AutoencoderKL(tiny_vae()));
      text_encoder = register_module("text_encoder", ClipTextModel(tiny_clip_text()));
    }
    UNet2DCondition unet{nullptr};
    AutoencoderKL vae{nullptr};
    ClipTextModel text_encoder{nullptr};
  };
  Pipeline from_folders, from_single_file;
  load(*from_folders.unet, fixture("unet_tiny/weights.safetensors"), "diffusers_unet");
  load(*from_folders.vae, fixture("vae_tiny/weights.safetensors"), "diffusers_vae");
  load(*from_folders.text_encoder, fixture("clip_text_tiny/weights.safetensors"), "hf_clip_text");
  load(from_single_file, fixture("ldm_tiny.safetensors"), "sd_single_file");
  const auto expected = from_folders.named_parameters();
  const auto got = from_single_file.named_parameters();
  ASSERT_EQ(expected.size(), got.size());
  for (const auto& p : expected) EXPECT_TRUE(torch::equal(p.value(), got[p.key()])) << p.key();
  // A file of another kind is refused by name.
  try {
    load(from_single_file, fixture("unet_tiny/weights.safetensors"), "sd_single_file");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a Stable Diffusion single-file checkpoint"));
  }
}

TEST(ClipTextModel, RefusesTooLongPrompts) {
  auto text = ClipTextModel(tiny_clip_text());
  try {
    text->forward(torch::zeros({1, 17}, torch::kLong));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected input_ids [B, L] with 1 <= L <= 16, got [1, 17]"));
  }
}

}  // namespace facet::test_sd_components
