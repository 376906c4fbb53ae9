// Stable Diffusion as a trainable model and DETEX on top of it, at test size: DDIM against
// diffusers' DDIMScheduler, new words and their initialisation, which parts get gradients, masked
// latents, seeded generation, a Custom Diffusion fit of one batch, and DETEX's mapped attribute words.
#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "models/build.h"
#include "models/generative/ddim.h"
#include "models/generative/detex.h"
#include "models/generative/stable_diffusion.h"
#include "models/layers/construction.h"
#include "tests/support/paths.h"
#include "tests/support/tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::test_stable_diffusion {

namespace fs = std::filesystem;
using namespace facet::models;
using namespace facet::models::generative;
using facet::test_support::expect_close;
using ::testing::HasSubstr;

namespace {

std::string fixture(const std::string& name) {
  return (fs::path(facet::test_support::kSourceDir) / "tests/fixtures/generative" / name).string();
}

// SD's structure at test size: the fixture tokenizer (3514 tokens), a 2-layer text tower of width 24,
// the VAE and UNet of the parity fixtures' shape (32 px images -> 8 x 8 latents).
std::string tiny_sd_yaml(const std::string& extra = "") {
  return "name: stable_diffusion\n"
         "tokenizer: '" + fixture("clip_tokenizer") + "'\n"
         "text_encoder: {vocab_size: 3514, hidden_size: 24, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4}\n"
         "vae: {block_out_channels: [8, 16, 16], layers_per_block: 1, norm_num_groups: 4}\n"
         "unet: {sample_size: 8, block_out_channels: [8, 16, 16], down_block_types: [CrossAttnDownBlock2D, CrossAttnDownBlock2D, "
         "DownBlock2D], layers_per_block: 1, attention_head_dim: 2, cross_attention_dim: 24, norm_num_groups: 4}\n"
         "new_tokens: ['<new1>']\n"
         "initializer_tokens: [cat]\n"
         "sampling: {steps: 4, guidance_scale: 3.0}\n" +
         extra;
}

template <class M>
std::shared_ptr<M> build(const std::string& yaml) {
  torch::manual_seed(0);
  auto model = std::dynamic_pointer_cast<M>(build_model(Config::parse(yaml, "model.yaml")));
  EXPECT_TRUE(model);
  model->weights_loaded({});
  return model;
}

data::Batch concept_batch(int64_t n, const std::string& prompt, uint64_t seed = 1) {
  torch::manual_seed(static_cast<int64_t>(seed));
  data::Batch b;
  b.fields["image"] = torch::rand({n, 3, 32, 32}) * 2 - 1;
  b.fields["mask"] = torch::zeros({n, 1, 32, 32});
  b.fields["mask"].slice(2, 8, 24).slice(3, 8, 24).fill_(1);
  b.text["prompt"] = std::vector<std::string>(static_cast<size_t>(n), prompt);
  b.indices = torch::arange(n);
  return b;
}

}  // namespace

TEST(Ddim, MatchesDiffusersDDIMScheduler) {
  safetensors::File golden(fixture("ddim.safetensors"));
  NoiseScheduleOptions o;
  o.beta_schedule = "scaled_linear";
  o.beta_start = 0.00085;
  o.beta_end = 0.012;
  for (const std::string prediction : {"epsilon", "v_prediction"}) {
    SCOPED_TRACE(prediction);
    o.prediction = prediction;
    const NoiseSchedule schedule(o);
    EXPECT_TRUE(torch::equal(schedule.alphas_cumprod(), golden.tensor("alphas_cumprod")));
    const DdimSampler sampler(schedule, DdimOptions{.steps = 10});
    const torch::Tensor t = golden.tensor("timesteps");
    ASSERT_EQ(static_cast<int64_t>(sampler.timesteps().size()), t.size(0));
    for (size_t k = 0; k < sampler.timesteps().size(); ++k) EXPECT_EQ(sampler.timesteps()[k], t[static_cast<int64_t>(k)].item<int64_t>());
    const std::string suffix = prediction == "epsilon" ? "" : "_v";
    const auto sample = golden.tensor("sample"), output = golden.tensor("model_output");
    const auto first = sampler.step(output, sampler.timesteps().front(), sample);
    expect_close(first.prev_sample, golden.tensor("prev_sample_first" + suffix), 1e-6, "ddim first step " + prediction);
    expect_close(first.pred_original_sample, golden.tensor("pred_original_first" + suffix), 1e-6, "ddim x0 " + prediction);
    // The last step falls below t = 0: the previous alpha-bar is alpha-bar_0 (set_alpha_to_one false).
    const auto last = sampler.step(output, sampler.timesteps().back(), sample);
    expect_close(last.prev_sample, golden.tensor("prev_sample_last" + suffix), 1e-6, "ddim last step " + prediction);
  }
}

TEST(StableDiffusion, NewWordsStartAsTheirInitializerAndAloneLearn) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml());
  const int64_t new_id = sd->tokenizer().token_to_id("<new1>");
  EXPECT_EQ(new_id, 3514);
  const auto ids = sd->tokenize({"a photo of a <new1> cat"}, torch::kCPU);
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{1, 77}));
  EXPECT_EQ(ids[0][5].item<int64_t>(), new_id);
  const torch::Tensor& table = sd->text_encoder->text_model->embeddings->token_embedding->weight;
  const int64_t cat = sd->tokenizer().token_to_id("cat</w>");
  EXPECT_TRUE(torch::equal(sd->new_token_embeddings[0], table[cat]));
  const auto words = sd->word_embeddings(ids, nullptr, nullptr);
  EXPECT_TRUE(torch::equal(words[0][5], sd->new_token_embeddings[0]));
  EXPECT_TRUE(torch::equal(words[0][4], table[ids[0][4].item<int64_t>()]));

  // One diffusion loss: the new word and the UNet get gradients, the frozen text tower and VAE none.
  sd->train();
  const auto batch = concept_batch(2, "a photo of a <new1> cat");
  const auto in = sd->encode(batch);
  EXPECT_EQ(in.x0.sizes(), (std::vector<int64_t>{2, 4, 8, 8}));
  const auto prediction = sd->denoise(in.x0, torch::tensor({10, 900}), in);
  prediction.pow(2).mean().backward();
  ASSERT_TRUE(sd->new_token_embeddings.grad().defined());
  EXPECT_GT(sd->new_token_embeddings.grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(sd->unet->conv_in->weight.grad().defined());
  for (const auto& p : sd->text_encoder->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : sd->vae->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(StableDiffusion, LossMaskIsTheMaskedFractionOfEachLatentCell) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml("mask_field: mask\n"));
  auto batch = concept_batch(1, "a <new1>");
  batch.fields["mask"].zero_();
  batch.fields["mask"].slice(2, 0, 2).slice(3, 0, 4).fill_(1);  // half of latent cell (0, 0), all of nothing else
  const auto in = sd->encode(batch);
  ASSERT_EQ(in.loss_mask.sizes(), (std::vector<int64_t>{1, 1, 8, 8}));
  EXPECT_FLOAT_EQ(in.loss_mask[0][0][0][0].item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(in.loss_mask.sum().item<float>(), 0.5f);
}

TEST(StableDiffusion, GenerationIsSeededPerSample) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml());
  sd->eval();
  SamplingOptions s = sd->options().sampling;
  const auto ab = sd->generate({"a <new1> cat", "a red dog"}, s, {7, 8});
  ASSERT_EQ(ab.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_GE(ab.min().item<float>(), 0.0f);
  EXPECT_LE(ab.max().item<float>(), 1.0f);
  // The same prompt and seed give the same picture in any batch; another seed another one.
  const auto ba = sd->generate({"a red dog", "a <new1> cat"}, s, {8, 7});
  expect_close(ba[1], ab[0], 1e-5, "sample 0 in another batch position");
  expect_close(ba[0], ab[1], 1e-5, "sample 1 in another batch position");
  const auto other = sd->generate({"a <new1> cat"}, s, {9});
  EXPECT_GT((other[0] - ab[0]).abs().max().item<float>(), 1e-3);
  // forward(): samples for the batch's prompts, seeded by sampling.seed + dataset index.
  auto batch = concept_batch(2, "a <new1> cat");
  batch.indices = torch::tensor({7, 9});
  const auto out = sd->forward(batch);
  expect_close(out.at("samples")[0], ab[0], 1e-5, "forward sample of index 7");
  EXPECT_EQ(out.text.at("prompt"), batch.text.at("prompt"));
}

// Custom Diffusion's parameters (the cross-attention K/V projections and the new word) fit one
// batch: the masked diffusion loss at fixed timesteps and noise falls.
TEST(StableDiffusion, CustomDiffusionParametersFitOneBatch) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml("mask_field: mask\nsample_posterior: false\n"));
  std::vector<torch::Tensor> params{sd->new_token_embeddings};
  for (const auto& p : sd->unet->named_parameters())
    if (p.key().find("attn2.to_k") != std::string::npos || p.key().find("attn2.to_v") != std::string::npos) params.push_back(p.value());
  ASSERT_EQ(params.size(), 1u + 2 * 7);  // 7 cross-attention sites in the tiny UNet: 1 + 1 down, 1 mid, 2 + 2 up
  for (auto& p : sd->parameters()) p.set_requires_grad(false);
  for (auto& p : params) p.set_requires_grad(true);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-2));
  const auto batch = concept_batch(2, "photo of a <new1> cat");
  torch::manual_seed(3);
  const torch::Tensor t = torch::tensor({300, 700});
  torch::Tensor noise;
  double first = 0, last = 0;
  for (int step = 0; step < 80; ++step) {
    const auto in = sd->encode(batch);
    if (!noise.defined()) noise = torch::randn_like(in.x0);
    const auto noisy = sd->schedule().add_noise(in.x0, noise, t);
    const auto err = (sd->denoise(noisy, t, in) - noise).pow(2) * in.loss_mask;
    const auto loss = err.sum() / in.loss_mask.expand_as(err).sum();
    adam.zero_grad();
    loss.backward();
    adam.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
}

// Custom Diffusion's detached start token: K/V learn nothing through the context's first token.
TEST(StableDiffusion, FrozenStartTokenKVGetNoGradientThroughTheFirstToken) {
  for (const bool freeze : {false, true}) {
    torch::manual_seed(0);
    Attention attention(8, 2, 6, false);
    attention->freeze_start_token_kv = freeze;
    torch::Tensor context = torch::zeros({1, 3, 6});
    context.select(1, 0).normal_();  // only the first token is non-zero: K/V of the others are 0 (no bias)
    attention->forward(torch::randn({1, 4, 8}), context).pow(2).sum().backward();
    const double g = attention->to_k->weight.grad().abs().sum().item<double>() + attention->to_v->weight.grad().abs().sum().item<double>();
    if (freeze) EXPECT_EQ(g, 0.0);
    else EXPECT_GT(g, 0.0);
  }
  // The model sets it on every cross-attention (attn2), and only there.
  auto sd = build<StableDiffusion>(tiny_sd_yaml("freeze_start_token_kv: true\n"));
  int crossed = 0;
  for (const auto& m : sd->unet->named_modules())
    if (auto* a = m.value()->as<Attention>()) {
      EXPECT_EQ(a->freeze_start_token_kv, m.key().ends_with("attn2")) << m.key();
      crossed += a->freeze_start_token_kv;
    }
  EXPECT_EQ(crossed, 7);
}

// A word trained in an earlier run and loaded by train.init_weights is kept, not reset to its initializer.
TEST(StableDiffusion, LoadedWordsAreNotResetToTheirInitializer) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml());
  torch::NoGradGuard no_grad;
  sd->new_token_embeddings.fill_(0.5);
  sd->weights_loaded({"new_token_embeddings", "unet.conv_in.weight"});
  EXPECT_TRUE(torch::equal(sd->new_token_embeddings, torch::full_like(sd->new_token_embeddings, 0.5)));
  sd->weights_loaded({"unet.conv_in.weight"});
  EXPECT_FALSE(torch::equal(sd->new_token_embeddings, torch::full_like(sd->new_token_embeddings, 0.5)));
}

TEST(StableDiffusion, RefusesPixelsOutsideMinusOneToOneAndBadSampling) {
  auto sd = build<StableDiffusion>(tiny_sd_yaml());
  auto batch = concept_batch(1, "a <new1>");
  batch.fields["image"] = batch.fields["image"] * 127.5 + 127.5;  // 0..255, normalize forgotten
  try {
    sd->encode(batch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("images must be in [-1, 1] (data.transforms: normalize with mean and std 127.5)"));
  }
  try {
    build_model(Config::parse(tiny_sd_yaml().replace(tiny_sd_yaml().find("guidance_scale: 3.0"), 19, "eta: 1.5"), "model.yaml"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("sampling.eta"));
  }
  try {
    const NoiseSchedule schedule(NoiseScheduleOptions{});
    DdimSampler(schedule, DdimOptions{.steps = 1000});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("DDIM: 1000 steps spaced 1 apart from 1 pass the schedule's last timestep 999"));
  }
}

TEST(StableDiffusion, ConfigErrorsNameTheKey) {
  auto error = [](const std::string& yaml) {
    try {
      build_model(Config::parse(yaml, "model.yaml"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string two = tiny_sd_yaml();
  two.replace(two.find("[cat]"), 5, "[cat, dog]");
  EXPECT_THAT(error(two), HasSubstr("model.yaml:7: initializer_tokens: 2 initializer tokens for 1 new tokens"));
  std::string wide = tiny_sd_yaml();
  wide.replace(wide.find("cross_attention_dim: 24"), 23, "cross_attention_dim: 32");
  EXPECT_THAT(error(wide), HasSubstr("model.unet.cross_attention_dim 32 must equal model.text_encoder.hidden_size 24"));
  auto sd = build<StableDiffusion>(tiny_sd_yaml());
  data::Batch no_prompts = concept_batch(1, "x");
  no_prompts.text.clear();
  try {
    sd->encode(no_prompts);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the batch has no text field \"prompt\" (model.prompt_field)"));
  }
}

TEST(StableDiffusion, InitializerMustBeOneExistingToken) {
  std::string yaml = tiny_sd_yaml();
  yaml.replace(yaml.find("[cat]"), 5, "[photograph]");
  auto sd = std::dynamic_pointer_cast<StableDiffusion>(build_model(Config::parse(yaml, "model.yaml")));
  try {
    sd->weights_loaded({});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.initializer_tokens[0]: \"photograph\" is"));
    EXPECT_THAT(e.what(), HasSubstr("it must be one"));
  }
}

// --- DETEX ------------------------------------------------------------------------------------------

namespace {

std::string tiny_detex_yaml() {
  std::string yaml = tiny_sd_yaml("image_encoder: {image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, "
                                  "num_hidden_layers: 2, num_attention_heads: 4}\nmapper_hidden: 16\n");
  return yaml.replace(0, yaml.find('\n'), "name: detex");
}

}  // namespace

TEST(Detex, AttributeWordsAreMappedFromEachImage) {
  auto detex = build<Detex>(tiny_detex_yaml());
  detex->train();
  const auto batch = concept_batch(2, "photo of a <new1> cat with [B] background in [P] pose");
  const auto ids = detex->tokenize(batch.text.at("prompt"), torch::kCPU);
  const int64_t b_id = detex->tokenizer().token_to_id("[B]"), p_id = detex->tokenizer().token_to_id("[P]");
  EXPECT_EQ(b_id, 3515);
  EXPECT_EQ(p_id, 3516);
  const int64_t b_at = (ids[0] == b_id).nonzero().item<int64_t>(), p_at = (ids[0] == p_id).nonzero().item<int64_t>();
  TensorDict regularizers;
  const auto words = detex->word_embeddings(ids, &batch, &regularizers);
  const auto mapped = detex->attribute_words(batch.fields.at("image"));
  ASSERT_EQ(mapped.sizes(), (std::vector<int64_t>{2, 2, 24}));
  expect_close(words[0][b_at], mapped[0][0], 1e-6, "[B] of image 0");
  expect_close(words[1][p_at], mapped[1][1], 1e-6, "[P] of image 1");
  EXPECT_GT((mapped[0][0] - mapped[1][0]).abs().max().item<float>(), 0) << "image-specific";
  ASSERT_TRUE(regularizers.contains("mapper_l1"));
  EXPECT_NEAR(regularizers.at("mapper_l1").item<double>(), 0.01 * mapped.abs().mean().item<double>(), 1e-6);

  // The loss reaches the mappers and the subject word, not the frozen image tower.
  const auto in = detex->encode(batch);
  ASSERT_TRUE(in.regularizers.contains("mapper_l1"));
  (detex->denoise(in.x0, torch::tensor({5, 500}), in).pow(2).mean() + in.regularizers.at("mapper_l1")).backward();
  for (const auto& p : detex->mappers->parameters()) ASSERT_TRUE(p.grad().defined());
  EXPECT_TRUE(detex->new_token_embeddings.grad().defined());
  for (const auto& p : detex->image_encoder->parameters()) EXPECT_FALSE(p.grad().defined());
}

// Built for a checkpoint (train.defer_init): what no file holds — the new word and the mappers —
// is initialised anyway; everything else waits for train.init_weights.
TEST(Detex, WhatNoFileHoldsIsInitialisedWhenTheRestIsDeferred) {
  const auto model = build_model(Config::parse(tiny_detex_yaml(), "model.yaml"), {.defer_init = true});
  const auto left = uninitialized_tensors(*model);
  EXPECT_FALSE(left.empty());
  for (const auto& name : left) {
    EXPECT_FALSE(name.starts_with("mappers.")) << name;
    EXPECT_NE(name, "new_token_embeddings");
  }
}

TEST(Detex, InferenceUsesTheSubjectWordAloneAndAttributesNeedAnImage) {
  auto detex = build<Detex>(tiny_detex_yaml());
  detex->eval();
  // Without attribute words no image is needed: a plain prompt generates.
  SamplingOptions s = detex->options().sampling;
  s.steps = 2;
  EXPECT_EQ(detex->generate({"a <new1> cat on the beach"}, s, {1}).sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
  try {
    detex->generate({"a <new1> cat with [B] background"}, s, {1});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("a prompt uses an attribute word ([B]) but there is no image to map it from"));
  }
}

}  // namespace facet::test_stable_diffusion
