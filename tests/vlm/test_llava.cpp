// LLaVA-1.5, EmoLA and LiteGPT: parity of LLaVA with transformers' LlavaForConditionalGeneration on a
// tiny random configuration (tools/golden/vlm_golden.py: logits, loss, greedy answers), the three
// checkpoint layouts, the placeholder splicing, EmoLA's prior token and LoRA, LiteGPT's fold, parameter
// counts at 7B, and short trainings whose loss falls.
#include "core/error.h"
#include "core/safetensors.h"
#include "models/adapters/adapter.h"
#include "models/build.h"
#include "models/llm/llama.h"
#include "models/vlm/emola.h"
#include "models/vlm/litegpt.h"
#include "models/vlm/llava.h"
#include "models/weights/init_weights.h"
#include "tests/support/paths.h"
#include "tests/support/tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace facet::test_llava {

namespace fs = std::filesystem;
using namespace facet::models;
using namespace facet::models::vlm;
using facet::test_support::expect_close;
using facet::test_support::parameter_count;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

namespace {

fs::path fixture(const std::string& name) { return fs::path(facet::test_support::kSourceDir) / "tests/fixtures/vlm" / name; }

void load(torch::nn::Module& m, const fs::path& path, const std::string& convert, const std::string& extra = "") {
  init_weights(m, Config::parse("w:\n  - {path: '" + path.string() + "', convert: " + convert + extra + "}", "test").at("w"));
}

Config tiny_llava_config(const std::string& name = "llava", const std::string& extra = "") {
  return Config::parse("{name: " + name + ", hf_config: '" + fixture("llava_tiny").string() + "'" + extra + "}", "test");
}

std::shared_ptr<LlavaModel> tiny_llava(const std::string& file = "model.safetensors") {
  auto model = std::make_shared<LlavaModel>(tiny_llava_config());
  load(*model, fixture("llava_tiny") / file, "llava");
  model->eval();
  return model;
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

data::Batch llava_batch(safetensors::File& golden) {
  data::Batch batch;
  batch.fields["input_ids"] = golden.tensor("input_ids");
  batch.fields["attention_mask"] = torch::ones_like(golden.tensor("input_ids"));
  batch.fields["labels"] = golden.tensor("labels");
  batch.fields["image"] = golden.tensor("pixel_values");
  batch.indices = torch::arange(2);
  return batch;
}

TEST(Llava, LogitsAndLossMatchTransformers) {
  auto model = tiny_llava();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  EXPECT_EQ(parameter_count(*model), std::stoll(golden.metadata().at("num_parameters")));
  EXPECT_EQ(model->options().num_parameters(), parameter_count(*model));
  EXPECT_EQ(model->image_token_id(), 99);
  auto batch = llava_batch(golden);
  torch::NoGradGuard no_grad;
  const auto out = model->forward(batch);
  EXPECT_EQ(out.at("logits").sizes(), (std::vector<int64_t>{2, 9 + 15, 100}));  // one placeholder -> 16 tokens
  expect_close(out.at("logits"), golden.tensor("logits"), 1e-5, "llava logits");
  Outputs o;
  const auto loss = model->forward_losses(batch, o);
  EXPECT_NEAR(loss.total.item<double>(), golden.tensor("loss").item<double>(), 1e-5);
  EXPECT_EQ(o.at("tokens").item<double>(), 2 * 3);  // the three answer tokens of each row
  // More tokens than a loss chunk: the chunked loss (logits recomputed in backward), same value.
  auto chunked = std::make_shared<LlavaModel>(tiny_llava_config("llava", ", loss_chunk_tokens: 8"));
  load(*chunked, fixture("llava_tiny/model.safetensors"), "llava");
  Outputs o2;
  EXPECT_NEAR(chunked->forward_losses(batch, o2).total.item<double>(), golden.tensor("loss").item<double>(), 1e-5);
}

TEST(Llava, GreedyAnswersMatchTransformers) {
  auto model = tiny_llava();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  const auto ids = golden.tensor("input_ids");
  const auto pixels = golden.tensor("pixel_values");
  llm::GenerationOptions g;
  g.max_new_tokens = 8;
  g.eos_token_ids = {2};
  for (int64_t b = 0; b < 2; ++b) {
    data::Batch images;
    images.fields["image"] = pixels.slice(0, b, b + 1);
    const auto answer = model->generate(images, {to_vector(ids[b])}, g);
    EXPECT_EQ(answer[0].tokens, to_vector(golden.tensor("greedy")[b])) << "row " << b;
  }
  // Both together, the second prompt shortened so that it is left-padded: the same answers as alone.
  data::Batch both;
  both.fields["image"] = pixels;
  const std::vector<int64_t> p0 = to_vector(ids[0]), p1 = to_vector(ids[1].slice(0, 0, 6));
  const auto together = model->generate(both, {p0, p1}, g);
  data::Batch second;
  second.fields["image"] = pixels.slice(0, 1, 2);
  EXPECT_EQ(together[0].tokens, to_vector(golden.tensor("greedy")[0]));
  EXPECT_EQ(together[1].tokens, model->generate(second, {p1}, g)[0].tokens);
}

TEST(Llava, AnswersForATrainingBatchStopBeforeTheReference) {
  auto model = tiny_llava();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  auto batch = llava_batch(golden);  // labels from position 6: the prompts are the first 6 tokens
  llm::GenerationOptions g;
  g.max_new_tokens = 3;
  const auto answers = model->answer(batch, g);
  for (int64_t b = 0; b < 2; ++b) {
    data::Batch image;
    image.fields["image"] = batch.fields.at("image").slice(0, b, b + 1);
    EXPECT_EQ(answers[b].tokens, model->generate(image, {to_vector(batch.fields.at("input_ids")[b].slice(0, 0, 6))}, g)[0].tokens);
  }
}

TEST(Llava, OriginalRepositoryLayoutLoadsTheSameWeights) {
  auto hf = tiny_llava("model.safetensors");
  auto orig = tiny_llava("original_layout.safetensors");
  const auto a = hf->named_parameters(), b = orig->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  EXPECT_TRUE(a.contains("vision_tower.vision_model.encoder.layers.2.self_attn.q_proj.weight"));
  EXPECT_TRUE(a.contains("multi_modal_projector.linear_2.bias"));
  EXPECT_TRUE(a.contains("language_model.model.layers.1.mlp.down_proj.weight"));
  EXPECT_TRUE(a.contains("language_model.lm_head.weight"));
}

TEST(Llava, PlaceholdersAndImagesMustAgree) {
  auto model = tiny_llava();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  auto batch = llava_batch(golden);
  batch.fields["image"] = golden.tensor("pixel_values").slice(0, 0, 1);
  EXPECT_THAT([&] { model->forward(batch); }, ThrowsMessage<Error>(HasSubstr("the batch holds 1 image(s) but more placeholders (id 99)")));
  batch.fields["image"] = torch::cat({golden.tensor("pixel_values"), golden.tensor("pixel_values")});
  EXPECT_THAT([&] { model->forward(batch); }, ThrowsMessage<Error>(HasSubstr("holds 4 image(s) but input_ids have 2 placeholder(s)")));
  // A text-only row (no placeholder, no image) beside an image row: padded on the right, mask 0 there.
  auto ids = golden.tensor("input_ids").clone();
  ids[1][4] = 5;
  const auto s = model->splice(ids, {}, {}, torch::zeros({1, 16, 32}), false);
  EXPECT_EQ(s.embeds.sizes(), (std::vector<int64_t>{2, 24, 32}));
  EXPECT_EQ(s.attention_mask[1].sum().item<int64_t>(), 9);
  EXPECT_EQ(s.attention_mask[0].sum().item<int64_t>(), 24);
}

TEST(Llava, ParameterCountAt7B) {
  const auto o = LlavaOptions::llava15_7b();
  EXPECT_EQ(clip_vision_parameters(o.vision), 303507456);
  EXPECT_EQ(MlpProjectorImpl::count(1024, 4096, 4096), 20979712);
  EXPECT_EQ(o.text.num_parameters(), 6738415616LL);
  EXPECT_EQ(o.num_parameters(), 7062902784LL);  // liuhaotian/llava-v1.5-7b (vocab 32000)
  EXPECT_EQ(o.vision.num_feature_tokens(), 576);
  // Built on the meta device: shapes only, no memory.
  ConstructionScope scope(torch::kBFloat16, true, torch::Device("meta"));
  LlavaModel model(o);
  EXPECT_EQ(parameter_count(model), 7062902784LL);
  EXPECT_EQ(model.named_parameters()["vision_tower.vision_model.embeddings.position_embedding.weight"].sizes(),
            (std::vector<int64_t>{577, 1024}));
}

TEST(Llava, TrainingLowersTheLossWithTheTowerFrozen) {
  torch::manual_seed(0);
  auto model = tiny_llava();
  model->train();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  auto batch = llava_batch(golden);
  const auto tower_before = model->vision_tower->vision_model->post_layernorm->weight.clone();
  std::vector<torch::Tensor> trainable;
  for (auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  EXPECT_EQ(static_cast<int64_t>(trainable.size()), static_cast<int64_t>(model->parameters().size()) -
                                                        static_cast<int64_t>(model->vision_tower->parameters().size()));
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    Outputs o;
    auto loss = model->forward_losses(batch, o);
    if (step == 0) first = loss.total.item<double>();
    last = loss.total.item<double>();
    opt.zero_grad();
    loss.total.backward();
    opt.step();
  }
  EXPECT_LT(last, 0.2 * first) << "first " << first << " last " << last;
  EXPECT_TRUE(torch::equal(tower_before, model->vision_tower->vision_model->post_layernorm->weight));
}

// --- EmoLA ------------------------------------------------------------------------------------------

TEST(Emola, PriorTokenFollowsTheImageTokensAndLoraWrapsTheDecoderOnly) {
  auto node = Config::parse(
      "{name: emola, hf_config: '" + fixture("llava_tiny").string() +
          "', adapters: [{name: lora, rank: 4, alpha: 8, dropout: 0.05, targets: [model.layers.*.self_attn.q_proj, "
          "model.layers.*.self_attn.k_proj, model.layers.*.self_attn.v_proj, model.layers.*.self_attn.o_proj, "
          "model.layers.*.mlp.gate_proj, model.layers.*.mlp.up_proj, model.layers.*.mlp.down_proj]}]}",
      "test");
  auto built = build_model(node);
  auto* model = dynamic_cast<EmolaModel*>(built.get());
  ASSERT_NE(model, nullptr);
  load(*model, fixture("llava_tiny/model.safetensors"), "llava");  // the prior projector keeps its initialisation
  int64_t lora = 0, adapted_vision = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find("lora_") == std::string::npos) continue;
    lora += p.value().numel();
    if (p.key().starts_with("vision_tower")) ++adapted_vision;
  }
  // 2 layers x (4 attention projections of 32x32 + 3 MLP projections 32<->64), rank 4.
  EXPECT_EQ(lora, 2 * (4 * 4 * (32 + 32) + 3 * 4 * (32 + 64)));
  EXPECT_EQ(adapted_vision, 0);
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  auto batch = llava_batch(golden);
  batch.fields["landmarks"] = torch::randn({2, 212});
  model->eval();
  torch::NoGradGuard no_grad;
  const auto visual = model->visual_tokens(batch);
  EXPECT_EQ(visual.sizes(), (std::vector<int64_t>{2, 17, 32}));
  // The first 16 are LLaVA's, the 17th is the projected landmark vector.
  expect_close(visual.slice(1, 0, 16), model->LlavaModel::visual_tokens(batch), 1e-6, "emola image tokens");
  expect_close(visual.select(1, 16), model->prior_token(batch.fields.at("landmarks")).squeeze(1), 1e-6, "emola prior token");
  EXPECT_EQ(model->forward(batch).at("logits").size(1), 9 + 16);
  batch.fields["landmarks"] = torch::randn({2, 68 * 2});
  EXPECT_THAT([&] { model->forward(batch); }, ThrowsMessage<Error>(HasSubstr("landmarks must be [B, 212]")));
}

TEST(Emola, TrainingWithLandmarksLowersTheLoss) {
  torch::manual_seed(1);
  auto model = std::make_shared<EmolaModel>(tiny_llava_config("emola"));
  load(*model, fixture("llava_tiny/model.safetensors"), "llava");
  apply_adapters(*model, Config::parse("a: [{name: lora, rank: 4, alpha: 8, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.v_proj]}]").at("a"));
  model->train();
  safetensors::File golden(fixture("llava_tiny/golden.safetensors"));
  auto batch = llava_batch(golden);
  batch.fields["landmarks"] = torch::randn({2, 212});
  std::vector<torch::Tensor> trainable;
  for (auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    Outputs o;
    auto loss = model->forward_losses(batch, o);
    if (step == 0) first = loss.total.item<double>();
    last = loss.total.item<double>();
    opt.zero_grad();
    loss.total.backward();
    opt.step();
  }
  EXPECT_LT(last, 0.3 * first) << "first " << first << " last " << last;
  // The prior projector learns (it is not frozen by LoRA's freeze_base).
  EXPECT_TRUE(model->landmark_projector->linear_1->weight.requires_grad());
}

TEST(Emola, ParameterCountsAt7B) {
  EmolaOptions o;
  EXPECT_EQ(o.prior_projector_parameters(), 17653760);  // 212*4096 + 4096 + 4096*4096 + 4096
  EXPECT_EQ(o.num_parameters(), 7062902784LL + 17653760);
  // LoRA r = 128 on the seven projections of Vicuna-7B's 32 layers, built on the meta device.
  ConstructionScope scope(torch::kBFloat16, true, torch::Device("meta"));
  llm::LlamaForCausalLM lm(o.llava.text);
  const auto applied = apply_adapters(lm, Config::parse(
      "a: [{name: lora, rank: 128, alpha: 256, dropout: 0.05, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.k_proj, "
      "model.layers.*.self_attn.v_proj, model.layers.*.self_attn.o_proj, model.layers.*.mlp.gate_proj, model.layers.*.mlp.up_proj, "
      "model.layers.*.mlp.down_proj]}]").at("a"));
  EXPECT_EQ(applied.at(0).layers.size(), 32u * 7);
  int64_t lora = 0;
  for (const auto& p : lm.named_parameters())
    if (p.key().find("lora_") != std::string::npos) lora += p.value().numel();
  EXPECT_EQ(lora, 319815680);  // 32 x (4 x 128 x 8192 + 3 x 128 x 15104)
}

// --- LiteGPT ----------------------------------------------------------------------------------------

Config tiny_litegpt_config() {
  return Config::parse(
      "{name: litegpt, fold: 5, projector_hidden: 48, image_token_id: 99,"
      " biomedclip: {image_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 4},"
      " pubmedclip: {image_size: 32, patch_size: 16, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4},"
      " text: {vocab_size: 100, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4}}",
      "test");
}

TEST(LiteGpt, FoldIsRowMajorOverTheConcatenatedTokens) {
  torch::manual_seed(2);
  LiteGptModel model(tiny_litegpt_config());
  EXPECT_EQ(model.options().visual_tokens(), 4);  // (16 BiomedCLIP + 4 PubMedCLIP) / 5
  const auto x = torch::randn({2, 3, 32, 32});
  const auto folded = model.fused_tokens(x);
  ASSERT_EQ(folded.sizes(), (std::vector<int64_t>{2, 4, 160}));
  // By hand: tokens 0..15 from BiomedCLIP (after its final norm, CLS dropped), 16..19 from PubMedCLIP
  // (last hidden state, CLS dropped), each normalised without parameters; group 3 = [b15, p0, p1, p2, p3]
  // (the analogue of the paper model's group 39: one BiomedCLIP token and four PubMedCLIP tokens).
  torch::NoGradGuard no_grad;
  const auto b = model.biomedclip->forward_tokens(x).tokens.slice(1, 1);
  const auto p = model.pubmedclip->hidden_state(x, -1).slice(1, 1);
  auto ln = [](const torch::Tensor& t) {
    const auto mean = t.mean(-1, true), var = t.var(-1, false, true);
    return (t - mean) / torch::sqrt(var + 1e-5);
  };
  for (int64_t s = 0; s < 2; ++s) {
    expect_close(folded[s][3].slice(0, 0, 32), ln(b[s][15]), 1e-5, "group 3 slot 0 = biomed 15");
    for (int64_t j = 0; j < 4; ++j) expect_close(folded[s][3].slice(0, 32 * (j + 1), 32 * (j + 2)), ln(p[s][j]), 1e-5, "group 3 pubmed");
    expect_close(folded[s][1].slice(0, 64, 96), ln(b[s][7]), 1e-5, "group 1 slot 2 = biomed 7");
  }
  data::Batch batch;
  batch.fields["image"] = x;
  batch.fields["input_ids"] = torch::tensor({1, 99, 5, 6, 1, 7, 99, 8}, torch::kLong).view({2, 4});
  EXPECT_EQ(model.forward(batch).at("logits").sizes(), (std::vector<int64_t>{2, 7, 100}));
  // Frozen towers; trainable projector and decoder.
  EXPECT_FALSE(any_trainable(*model.biomedclip));
  EXPECT_FALSE(any_trainable(*model.pubmedclip));
  EXPECT_TRUE(any_trainable(*model.projector));
}

TEST(LiteGpt, TrainingWithLoraAndTheProjectorLowersTheLoss) {
  torch::manual_seed(3);
  auto node = tiny_litegpt_config();
  LiteGptModel model(node);
  apply_adapters(model, Config::parse("a: [{name: lora, rank: 4, alpha: 16, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.v_proj]}]").at("a"));
  model.language_model().model->gradient_checkpointing = true;  // same gradients, recomputed
  model.train();
  data::Batch batch;
  batch.fields["image"] = torch::randn({2, 3, 32, 32});
  batch.fields["input_ids"] = torch::tensor({1, 99, 5, 6, 7, 8, 1, 99, 9, 10, 11, 12}, torch::kLong).view({2, 6});
  batch.fields["labels"] = torch::tensor({-100, -100, -100, 6, 7, 8, -100, -100, -100, 10, 11, 12}, torch::kLong).view({2, 6});
  batch.indices = torch::arange(2);
  std::vector<torch::Tensor> trainable;
  for (auto& p : model.named_parameters())
    if (p.key().find("lora_") != std::string::npos || p.key().starts_with("projector.")) trainable.push_back(p.value());
    else p.value().set_requires_grad(false);
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(5e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 25; ++step) {
    Outputs o;
    auto loss = model.forward_losses(batch, o);
    if (step == 0) first = loss.total.item<double>();
    last = loss.total.item<double>();
    opt.zero_grad();
    loss.total.backward();
    opt.step();
  }
  // LoRA B starts at zero and only q, v adapt: the decoder learns more slowly than a full fine-tune.
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(LiteGpt, MiniGptV2ProjectorAndLoraLoad) {
  LiteGptModel model(tiny_litegpt_config());
  apply_adapters(model, Config::parse("a: [{name: lora, rank: 2, alpha: 16, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.v_proj]}]").at("a"));
  safetensors::TensorMap file;
  file["llama_proj.weight"] = torch::randn({32, 48});
  file["llama_proj.bias"] = torch::randn({32});
  for (int layer = 0; layer < 2; ++layer)
    for (const char* m : {"q_proj", "v_proj"}) {
      const std::string base = "llama_model.base_model.model.model.layers." + std::to_string(layer) + ".self_attn." + m;
      file[base + ".lora_A.default.weight"] = torch::randn({2, 32});
      file[base + ".lora_B.default.weight"] = torch::randn({32, 2});
    }
  file["llama_model.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] = torch::randn({32, 32});  // 8-bit base: left out
  file["ln_vision.weight"] = torch::ones({1408});
  const auto dir = fs::temp_directory_path() / ("facet_minigpt_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  safetensors::save(dir / "stage3.safetensors", file);
  load(model, dir / "stage3.safetensors", "minigpt_v2", ", strict: true");
  fs::remove_all(dir);
  EXPECT_TRUE(torch::equal(model.projector->linear_2->weight, file["llama_proj.weight"]));
  EXPECT_TRUE(torch::equal(model.named_parameters()["language_model.model.layers.1.self_attn.v_proj.lora_B.weight"],
                           file["llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"]));
}

TEST(LiteGpt, ParameterCountsAtThePaperConfiguration) {
  const auto o = LiteGptOptions::paper();
  EXPECT_EQ(o.visual_tokens(), 49);
  EXPECT_EQ(o.fused_dim(), 3840);
  EXPECT_EQ(o.projector_parameters(), 44705280);  // 3840*5632 + 5632 + 5632*4096 + 4096
  EXPECT_EQ(clip_vision_parameters(o.pubmedclip), 87456000);
  ConstructionScope scope(torch::kBFloat16, true, torch::Device("meta"));
  llm::LlamaForCausalLM lm(o.text);
  apply_adapters(lm, Config::parse("a: [{name: lora, rank: 64, alpha: 16, dropout: 0.05, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.v_proj]}]").at("a"));
  int64_t lora = 0;
  for (const auto& p : lm.named_parameters())
    if (p.key().find("lora_") != std::string::npos) lora += p.value().numel();
  EXPECT_EQ(lora, 33554432);  // 32 layers x 2 x 64 x (4096 + 4096)
}

}  // namespace

}  // namespace facet::test_llava
