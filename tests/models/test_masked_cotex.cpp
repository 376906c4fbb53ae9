// Masked CoTEX: parameter count at the released configuration, per-view token dropping (independent
// views, each view's logits computed from exactly its kept tokens), all tokens in evaluation, layer
// ids, option errors, checkpoints per view, and overfitting one batch with reduced ViTs.
#include "core/safetensors.h"
#include "models/face/masked_cotex.h"
#include "models/weights/init_weights.h"
#include "tests/models/face_batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

namespace facet::models::face::test_masked_cotex {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Reduced for CPU time: 64 px, patch 8 (64 tokens), 64 wide, 2 blocks.
MaskedCotexOptions tiny(double mask_ratio) {
  MaskedCotexOptions o;
  o.vit.image_size = 64;
  o.vit.patch_size = 8;
  o.vit.embed_dim = 64;
  o.vit.depth = 2;
  o.vit.num_heads = 2;
  o.vit.drop_path = 0;
  o.mask_ratio = mask_ratio;
  return o;
}

data::Batch image_batch(int64_t b, int64_t size, uint64_t seed) {
  data::Batch batch = testing::drawn_face_batch(b, size, seed);
  batch.fields["label"] = torch::arange(b, torch::kInt64) % 6;
  return batch;
}

std::string message_of(const std::string& yaml) {
  try {
    MaskedCotexOptions::from(Config::parse(yaml, "cotex.yaml"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MaskedCotex, ParameterCountAndOutputsAtThePaperConfiguration) {
  MaskedCotex model(MaskedCotexOptions{});
  EXPECT_EQ(model.options().views, 2);
  EXPECT_EQ(model.options().num_classes, 6);
  EXPECT_EQ(model.options().vit.drop_path, 0.1);
  // Two ViT-B/16 (85,798,656 each, learned position embeddings) + two Linear(768 -> 6) heads (4,614).
  EXPECT_EQ(testing::parameter_count(model), 2 * (85798656 + 4614));
  EXPECT_EQ(testing::parameter_count(model), 171606540);
  const auto state = safetensors::state_dict(model);
  for (const char* n : {"vits.0.cls_token", "vits.0.head.weight", "vits.1.head.bias", "vits.1.blocks.11.mlp.fc2.bias", "vits.1.norm.weight"})
    EXPECT_TRUE(state.count(n)) << n;

  data::Batch b;
  b.fields["image"] = torch::randn({1, 3, 224, 224});
  torch::NoGradGuard no_grad;
  model.eval();
  const TensorDict eval = model.forward(b);
  EXPECT_EQ(eval.at("view_logits").sizes(), (std::vector<int64_t>{2, 1, 6}));
  EXPECT_EQ(eval.at("logits").sizes(), (std::vector<int64_t>{1, 6}));
  EXPECT_FALSE(eval.contains("view_masks"));
  EXPECT_TRUE(torch::allclose(eval.at("logits"), eval.at("view_logits").sum(0)));
  // Training at the default ratio 0.75: 49 of 196 patches kept per view.
  model.train();
  const TensorDict train = model.forward(b);
  ASSERT_EQ(train.at("view_masks").sizes(), (std::vector<int64_t>{2, 1, 196}));
  EXPECT_EQ(train.at("view_masks")[0].sum().item<float>(), 196 - 49);
  EXPECT_FALSE(torch::equal(train.at("view_masks")[0], train.at("view_masks")[1]));
}

TEST(MaskedCotex, EachViewSeesItsOwnRandomTokensInTrainingAndAllTokensInEvaluation) {
  torch::manual_seed(0);
  MaskedCotex model(tiny(0.75));
  const data::Batch b = image_batch(4, 64, 2);
  const torch::Tensor& image = b.fields.at("image");
  model.train();
  TensorDict out;
  {
    torch::NoGradGuard no_grad;
    out = model.forward(b);
  }
  const torch::Tensor masks = out.at("view_masks");  // [2, 4, 64]
  ASSERT_EQ(masks.sizes(), (std::vector<int64_t>{2, 4, 64}));
  EXPECT_TRUE(torch::equal(masks.sum(-1), torch::full({2, 4}, 48.0f)));  // ⌊64 x 0.25⌋ = 16 kept
  for (int64_t i = 0; i < 4; ++i) EXPECT_FALSE(torch::equal(masks[0][i], masks[1][i])) << "sample " << i;
  EXPECT_FALSE(torch::equal(masks[0][0], masks[0][1]));  // per sample too
  // Each view's logits are its ViT on exactly the tokens its mask keeps: the CLS output does not
  // depend on the kept tokens' order, so noise = mask reproduces the view.
  auto heads = model.named_modules("", /*include_self=*/false);
  for (size_t v = 0; v < 2; ++v) {
    torch::NoGradGuard no_grad;
    const ViTTokens t = model.view(v)->forward_tokens(image, 0.75, masks[static_cast<int64_t>(v)].clone());
    EXPECT_TRUE(torch::equal(t.mask, masks[static_cast<int64_t>(v)]));
    auto* head = heads[fmt::format("vits.{}.head", v)]->as<torch::nn::Linear>();
    EXPECT_TRUE(torch::allclose(head->forward(t.tokens.select(1, 0)), out.at("view_logits")[static_cast<int64_t>(v)], 1e-4, 1e-5));
  }
  // Evaluation: every token, deterministic, the same as the unmasked ViTs.
  model.eval();
  torch::NoGradGuard no_grad;
  const TensorDict e1 = model.forward(b), e2 = model.forward(b);
  EXPECT_TRUE(torch::equal(e1.at("logits"), e2.at("logits")));
  for (size_t v = 0; v < 2; ++v) {
    auto* head = heads[fmt::format("vits.{}.head", v)]->as<torch::nn::Linear>();
    EXPECT_TRUE(torch::allclose(head->forward(model.view(v)->forward(image)), e1.at("view_logits")[static_cast<int64_t>(v)], 1e-4, 1e-5));
  }
  // Ratio 0 in training: no masks, the same logits as evaluation (no stochastic depth here).
  MaskedCotexOptions plain = tiny(0.0);
  torch::manual_seed(3);
  MaskedCotex unmasked(plain);
  unmasked.eval();
  const torch::Tensor reference = unmasked.forward(b).at("logits");
  unmasked.train();
  const TensorDict t0 = unmasked.forward(b);
  EXPECT_FALSE(t0.contains("view_masks"));
  EXPECT_TRUE(torch::allclose(t0.at("logits"), reference, 1e-5, 1e-6));
}

TEST(MaskedCotex, LayerIdsAndOptionErrors) {
  MaskedCotex model(tiny(0.5));
  ASSERT_EQ(model.num_layer_ids(), 4);
  EXPECT_EQ(model.layer_id("vits.1.pos_embed"), 0);
  EXPECT_EQ(model.layer_id("vits.0.patch_embed.proj.bias"), 0);
  EXPECT_EQ(model.layer_id("vits.0.blocks.0.attn.qkv.weight"), 1);
  EXPECT_EQ(model.layer_id("vits.1.blocks.1.norm2.bias"), 2);
  EXPECT_EQ(model.layer_id("vits.0.norm.weight"), 3);
  EXPECT_EQ(model.layer_id("vits.1.head.weight"), 3);
  for (const auto& item : model.named_parameters()) {
    EXPECT_GE(model.layer_id(item.key()), 0) << item.key();
    EXPECT_LT(model.layer_id(item.key()), 4) << item.key();
  }
  EXPECT_THAT(message_of("{mask_ratio: 1.0}"), HasSubstr("mask_ratio: expected a ratio in [0, 1)"));
  EXPECT_THAT(message_of("{mask_ratio: 0.999}"), HasSubstr("keeps at least one of the 196 patches"));
  EXPECT_THAT(message_of("{views: 0}"), HasSubstr("views: expected at least 1 view, got 0"));
  EXPECT_THAT(message_of("{num_classes: 1}"), HasSubstr("num_classes: expected at least 2 classes"));
  EXPECT_EQ(MaskedCotexOptions::from(Config::parse("{}")).mask_ratio, 0.75);  // the documented default
}

TEST(MaskedCotex, CheckpointsAreSharedOutAmongViews) {
  const fs::path dir = fs::temp_directory_path() / ("facet_test_cotex_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  torch::manual_seed(4);
  const MaskedCotexOptions o = tiny(0.5);
  ViT a(o.vit), b(o.vit);
  safetensors::save(dir / "a.safetensors", safetensors::state_dict(*a));
  safetensors::save(dir / "b.safetensors", safetensors::state_dict(*b));
  const std::string vit = "vit: {image_size: 64, patch_size: 8, embed_dim: 64, depth: 2, num_heads: 2}";
  // Four views from two checkpoints: views 0-1 from a, 2-3 from b (the release's allocation), one
  // train.init_weights entry per view.
  MaskedCotex four(MaskedCotexOptions::from(Config::parse(fmt::format("{{{}, views: 4}}", vit))));
  std::string entries;
  for (int i = 0; i < 4; ++i)
    entries += fmt::format("{}{{path: {}, convert: timm_vit, add_prefix: vits.{}.}}", i ? ", " : "", (dir / (i < 2 ? "a.safetensors" : "b.safetensors")).string(), i);
  init_weights(four, Config::parse("w: [" + entries + "]").at("w"));
  auto p = four.named_parameters();
  const auto wa = a->named_parameters()["blocks.0.mlp.fc1.weight"], wb = b->named_parameters()["blocks.0.mlp.fc1.weight"];
  EXPECT_TRUE(torch::equal(p["vits.0.blocks.0.mlp.fc1.weight"], wa));
  EXPECT_TRUE(torch::equal(p["vits.1.blocks.0.mlp.fc1.weight"], wa));
  EXPECT_TRUE(torch::equal(p["vits.2.blocks.0.mlp.fc1.weight"], wb));
  EXPECT_TRUE(torch::equal(p["vits.3.blocks.0.mlp.fc1.weight"], wb));
  // The heads start near zero (MAE fine-tuning's N(0, 2e-5)), the views thus near-uniform.
  EXPECT_LT(p["vits.0.head.weight"].abs().max().item<float>(), 2e-4);
  fs::remove_all(dir);
}

TEST(MaskedCotex, OverfitsOneBatchWithMaskedViews) {
  // Reduced ViTs (see tiny); half of the 64 tokens dropped per view in training. Loss as the
  // release: mean CE over the views + 100 x JS between them (JS written out here; its exact value
  // is checked in tests/train). Fresh masks every step keep the training loss noisy, so the
  // verdict is the loss with all tokens at the end, plus the masked loss of the last steps.
  torch::manual_seed(0);
  MaskedCotex model(tiny(0.5));
  const data::Batch b = image_batch(12, 64, 7);
  const torch::Tensor& target = b.fields.at("label");
  auto loss_of = [&](const torch::Tensor& views) {  // views [2, B, 6]
    const torch::Tensor ce = torch::cross_entropy_loss(views.flatten(0, 1), target.repeat({2}));
    const torch::Tensor p = torch::softmax(views, -1), m = p.mean(0, true).clamp_min(1e-4);
    return ce + 100 * (p * (p.clamp_min(1e-4).log() - m.log())).mean({1, 2}).mean();
  };
  torch::optim::Adam adam(model.parameters(), torch::optim::AdamOptions(1e-3));
  model.train();
  float first = 0, tail = 0;
  const int steps = 300;
  for (int step = 0; step < steps; ++step) {
    adam.zero_grad();
    const torch::Tensor loss = loss_of(model.forward(b).at("view_logits"));
    loss.backward();
    adam.step();
    if (step == 0) first = loss.item<float>();
    if (step >= steps - 10) tail += loss.item<float>() / 10;
  }
  model.eval();
  torch::NoGradGuard no_grad;
  const TensorDict out = model.forward(b);
  const float full = loss_of(out.at("view_logits")).item<float>();
  const auto correct = (out.at("logits").argmax(1) == target).sum().item<int64_t>();
  std::printf("Masked CoTEX overfit: loss %.4f -> %.4f (masked, last 10 steps), %.4f with all tokens, %lld/12 correct\n",
              first, tail, full, static_cast<long long>(correct));
  EXPECT_LT(full, 0.05);
  EXPECT_LT(tail, first / 10);
  EXPECT_EQ(correct, 12);
}

}  // namespace
}  // namespace facet::models::face::test_masked_cotex
