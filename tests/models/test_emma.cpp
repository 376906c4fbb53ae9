// EMMA and its DAN: parameter counts and names at the released configuration, output shapes, the
// frozen-but-training DAN (no gradients, moving BatchNorm statistics, following train()/eval()),
// layer ids, checkpoints loading by name through init_weights, and overfitting one batch with a reduced ViT.
#include "core/safetensors.h"
#include "models/face/dan.h"
#include "models/face/emma.h"
#include "models/weights/init_weights.h"
#include "tests/models/face_batch.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <unistd.h>

namespace facet::models::face::test_emma {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Reduced for CPU test time: the architecture is EMMA's, the ViT is narrow and shallow.
ViTOptions tiny_vit(int64_t image = 64, int64_t patch = 16) {
  ViTOptions v;
  v.image_size = image;
  v.patch_size = patch;
  v.embed_dim = 64;
  v.depth = 2;
  v.num_heads = 2;
  v.drop_path = 0;
  return v;
}

// Drawn faces with every EMMA target: AUs from the drawing, one expression per face, VA in [-1, 1].
data::Batch emma_batch(int64_t b, int64_t size, uint64_t seed) {
  data::Batch batch = testing::drawn_face_batch(b, size, seed);
  batch.fields["expression"] = torch::arange(b, torch::kInt64) % 8;
  torch::manual_seed(static_cast<uint64_t>(seed));
  batch.fields["va"] = torch::rand({b, 2}) * 2 - 1;
  batch.fields["va_mask"] = torch::ones({b, 2});
  return batch;
}

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_emma", name); }

std::set<std::string> names_of(const torch::nn::Module& m) {
  std::set<std::string> out;
  for (const auto& [name, t] : safetensors::state_dict(m)) out.insert(name);
  return out;
}

TEST(Dan, ParameterCountNamesAndShapesFollowTheRelease) {
  Dan dan;
  // torchvision ResNet-18 without fc: 11,689,512 - 513,000 = 11,176,512.
  // One head: spatial attention 1x1 conv 512->256 (131,328) + BN (512), 3x3 conv 256->512 (1,180,160)
  // + BN (1,024), 1x3 and 3x1 convs (393,728 each) + BNs (1,024 each) = 2,102,528; channel attention
  // FC 512->32 (16,416) + BN1d (64) + FC 32->512 (16,896) = 33,376; head = 2,135,904.
  // Four heads 8,543,616; fc 512->8 4,104; BatchNorm1d(8) 16. Total 19,724,248 (DAN paper: 19.72M).
  EXPECT_EQ(testing::parameter_count(*dan), 11176512 + 4 * 2135904 + 4104 + 16);
  EXPECT_EQ(testing::parameter_count(*dan), 19724248);
  const auto names = names_of(*dan);
  for (const char* n : {"features.0.weight", "features.1.running_var", "features.1.num_batches_tracked",
                        "features.4.0.conv1.weight", "features.5.0.downsample.0.weight", "features.7.1.bn2.bias",
                        "cat_head0.sa.conv1x1.0.weight", "cat_head0.sa.conv1x1.1.running_mean", "cat_head1.sa.conv_3x3.0.bias",
                        "cat_head2.sa.conv_1x3.1.weight", "cat_head3.sa.conv_3x1.0.weight", "cat_head3.ca.attention.0.weight",
                        "cat_head3.ca.attention.1.running_var", "cat_head3.ca.attention.3.bias", "fc.weight", "bn.running_mean"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("features.2.weight"));  // ReLU and max-pool hold nothing, as in PyTorch
  EXPECT_FALSE(names.count("cat_head4.sa.conv1x1.0.weight"));

  dan->eval();
  torch::NoGradGuard no_grad;
  const DanOutput out = dan->forward(torch::randn({2, 3, 224, 224}));
  EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{2, 512, 7, 7}));
  EXPECT_EQ(out.heads.sizes(), (std::vector<int64_t>{2, 4, 512}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 8}));
  // Log-softmax across the heads: per channel the heads' probabilities sum to one.
  EXPECT_TRUE(torch::allclose(out.heads.exp().sum(1), torch::ones({2, 512}), 1e-4, 1e-5));
  // One head: no log-softmax (the release skips it), the head's output is used as is.
  Dan single(DanOptions{7, 1});
  single->eval();
  const DanOutput one = single->forward(torch::randn({1, 3, 64, 64}));
  EXPECT_EQ(one.logits.sizes(), (std::vector<int64_t>{1, 7}));
  EXPECT_GE(one.heads.min().item<float>(), 0.0f);  // sigmoid-weighted pooled ReLU features
}

TEST(Emma, ParameterCountAndOutputsAtThePaperConfiguration) {
  Emma emma(EmmaOptions{});
  EXPECT_EQ(emma.options().vit.embed_dim, 768);
  EXPECT_EQ(emma.options().vit.drop_path, 0.1);
  EXPECT_EQ(emma.options().vit.norm_eps, 1e-6);
  // ViT-B/16 with learned position embeddings 85,798,656 (as test_backbones.cpp) + head MLP
  // 768->512 (393,728) and 512->20 (10,260) + VA head 28->256 (7,424) and 256->2 (514) + DAN 19,724,248.
  const int64_t vit = 85798656, head = 393728 + 10260, va_head = 7424 + 514, dan = 19724248;
  EXPECT_EQ(testing::parameter_count(emma), vit + head + va_head + dan);
  EXPECT_EQ(testing::parameter_count(emma), 105934830);
  int64_t trainable = 0;
  for (const auto& p : emma.parameters())
    if (p.requires_grad()) trainable += p.numel();
  EXPECT_EQ(trainable, vit + head + va_head);  // the DAN is frozen
  // The release's names: vit.* with the head inside, cnn.* and va_head.*.
  const auto names = names_of(emma);
  for (const char* n : {"vit.patch_embed.proj.weight", "vit.pos_embed", "vit.blocks.11.mlp.fc2.bias", "vit.norm.weight",
                        "vit.head.0.weight", "vit.head.2.bias", "cnn.features.0.weight", "cnn.cat_head3.ca.attention.3.weight",
                        "cnn.bn.running_var", "va_head.0.weight", "va_head.2.bias"})
    EXPECT_TRUE(names.count(n)) << n;

  emma.eval();
  torch::NoGradGuard no_grad;
  data::Batch b;
  b.fields["image"] = torch::randn({2, 3, 224, 224});
  const TensorDict out = emma.forward(b);
  EXPECT_EQ(out.at("va").sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(out.at("expression_logits").sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(out.at("au_logits").sizes(), (std::vector<int64_t>{2, 12}));
  EXPECT_EQ(out.at("dan_logits").sizes(), (std::vector<int64_t>{2, 8}));
}

TEST(Emma, VaHeadReadsTheDanAndViTLogitsInTheReleasesOrder) {
  EmmaOptions o;
  o.vit = tiny_vit();
  Emma emma(o);
  emma.eval();
  torch::NoGradGuard no_grad;
  const data::Batch b = emma_batch(3, 64, 5);
  const TensorDict out = emma.forward(b);
  // va = va_head(cat(dan_logits, expression_logits, au_logits)).
  const auto concat = torch::cat({out.at("dan_logits"), out.at("expression_logits"), out.at("au_logits")}, 1);
  auto* va_head = emma.named_modules("", /*include_self=*/false)["va_head"]->as<torch::nn::Sequential>();
  ASSERT_NE(va_head, nullptr);
  EXPECT_TRUE(torch::allclose(va_head->forward(concat), out.at("va"), 1e-5, 1e-6));
  // The expression and AU logits are the ViT head's 20 outputs, in that order.
  auto* vit_head = emma.named_modules("", /*include_self=*/false)["vit.head"]->as<torch::nn::Sequential>();
  const auto logits = vit_head->forward(emma.vit()->forward(b.fields.at("image")));
  EXPECT_TRUE(torch::allclose(logits, torch::cat({out.at("expression_logits"), out.at("au_logits")}, 1), 1e-5, 1e-6));
  // Without the DAN the VA head reads the 20 ViT logits.
  o.dan = false;
  Emma bare(o);
  bare.eval();
  const TensorDict bare_out = bare.forward(b);
  EXPECT_FALSE(bare_out.contains("dan_logits"));
  EXPECT_EQ(bare_out.at("va").sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(testing::parameter_count(bare), testing::parameter_count(emma) - 19724248 - 8 * 256);
}

TEST(Emma, FrozenDanGetsNoGradientButItsBatchNormStatisticsMoveInTraining) {
  torch::manual_seed(0);
  EmmaOptions o;
  o.vit = tiny_vit();
  Emma emma(o);
  auto buffers = emma.named_buffers();
  const torch::Tensor stem_mean = buffers["cnn.features.1.running_mean"].clone();
  const torch::Tensor head_mean = buffers["cnn.bn.running_mean"].clone();
  const int64_t tracked = buffers["cnn.features.1.num_batches_tracked"].item<int64_t>();

  emma.train();
  EXPECT_TRUE(emma.dan()->is_training()) << "the release keeps its DAN in train mode";
  const data::Batch b = emma_batch(4, 64, 2);
  const TensorDict out = emma.forward(b);
  // Only the VA loss: its gradient must reach the ViT through the VA head (nothing is detached).
  out.at("va").pow(2).sum().backward();
  for (const auto& item : emma.named_parameters()) {
    const std::string& name = item.key();
    if (name.rfind("cnn.", 0) == 0) {
      EXPECT_FALSE(item.value().requires_grad()) << name;
      EXPECT_FALSE(item.value().grad().defined()) << name;
    }
  }
  auto params = emma.named_parameters();
  EXPECT_GT(params["va_head.0.weight"].grad().abs().sum().item<float>(), 0);
  EXPECT_GT(params["vit.head.0.weight"].grad().abs().sum().item<float>(), 0);
  EXPECT_GT(params["vit.blocks.0.attn.qkv.weight"].grad().abs().sum().item<float>(), 0);
  // Train mode: the DAN's BatchNorms used and updated batch statistics.
  EXPECT_FALSE(torch::equal(buffers["cnn.features.1.running_mean"], stem_mean));
  EXPECT_FALSE(torch::equal(buffers["cnn.bn.running_mean"], head_mean));
  EXPECT_EQ(buffers["cnn.features.1.num_batches_tracked"].item<int64_t>(), tracked + 1);

  // Eval mode reaches the DAN too: running statistics are used and left alone.
  emma.eval();
  EXPECT_FALSE(emma.dan()->is_training());
  const torch::Tensor after_train = buffers["cnn.features.1.running_mean"].clone();
  {
    torch::NoGradGuard no_grad;
    emma.forward(b);
  }
  EXPECT_TRUE(torch::equal(buffers["cnn.features.1.running_mean"], after_train));
  emma.train();
  EXPECT_TRUE(emma.dan()->is_training());

  // freeze_dan: false (ablation) trains it.
  o.freeze_dan = false;
  Emma tuned(o);
  tuned.train();
  tuned.forward(b).at("va").sum().backward();
  EXPECT_TRUE(tuned.named_parameters()["cnn.fc.weight"].grad().defined());
}

TEST(Emma, LayerIdsPutEmbeddingsFirstAndEveryHeadOnTop) {
  EmmaOptions o;
  o.vit = tiny_vit();
  Emma emma(o);
  ASSERT_EQ(emma.num_layer_ids(), 4);  // embeddings, 2 blocks, final norm + heads
  EXPECT_EQ(emma.layer_id("vit.cls_token"), 0);
  EXPECT_EQ(emma.layer_id("vit.pos_embed"), 0);
  EXPECT_EQ(emma.layer_id("vit.patch_embed.proj.weight"), 0);
  EXPECT_EQ(emma.layer_id("vit.blocks.0.norm1.weight"), 1);
  EXPECT_EQ(emma.layer_id("vit.blocks.1.mlp.fc2.weight"), 2);
  for (const char* n : {"vit.norm.weight", "vit.head.0.weight", "vit.head.2.bias", "va_head.0.weight", "cnn.fc.weight",
                        "cnn.features.0.weight"})
    EXPECT_EQ(emma.layer_id(n), 3) << n;
  for (const auto& item : emma.named_parameters()) {
    const int64_t id = emma.layer_id(item.key());
    EXPECT_GE(id, 0) << item.key();
    EXPECT_LT(id, emma.num_layer_ids()) << item.key();
  }
}

// The release's checkpoints load through train.init_weights (the constructor reads no file).
TEST(Emma, LoadsMaeDanAndWholeModelCheckpointsThroughInitWeights) {
  const fs::path dir = fresh_dir("checkpoints");
  torch::manual_seed(1);
  // An MAE pre-training checkpoint of a 32-px model (grid 2x2): its decoder and mask token are
  // left out, its position embeddings resized to the 64-px grid (4x4).
  ViT mae(tiny_vit(32));
  safetensors::TensorMap mae_file;
  for (const auto& [name, t] : safetensors::state_dict(*mae)) mae_file[name] = t.clone();
  mae_file["mask_token"] = torch::zeros({1, 1, 64});
  mae_file["decoder_embed.weight"] = torch::zeros({32, 64});
  mae_file["head.weight"] = torch::zeros({1000, 64});  // a classifier of another task
  safetensors::save(dir / "mae.safetensors", mae_file);
  Dan dan_source;
  safetensors::save(dir / "dan.safetensors", safetensors::state_dict(*dan_source));

  const std::string vit = "vit: {image_size: 64, patch_size: 16, embed_dim: 64, depth: 2, num_heads: 2}";
  Emma emma(EmmaOptions::from(Config::parse("{" + vit + "}")));
  init_weights(emma, Config::parse(fmt::format("w: [{{path: {}, convert: timm_vit, add_prefix: vit.}}, {{path: {}, add_prefix: cnn.}}]",
                                               (dir / "mae.safetensors").string(), (dir / "dan.safetensors").string()),
                                   "emma.yaml").at("w"));
  auto p = emma.named_parameters();
  EXPECT_TRUE(torch::equal(p["vit.blocks.1.attn.qkv.weight"], mae_file["blocks.1.attn.qkv.weight"]));
  EXPECT_TRUE(torch::equal(p["vit.cls_token"], mae_file["cls_token"]));
  EXPECT_TRUE(torch::equal(p["vit.pos_embed"], resize_position_embedding(mae_file["pos_embed"], 4)));
  EXPECT_EQ(p["vit.pos_embed"].sizes(), (std::vector<int64_t>{1, 17, 64}));
  EXPECT_TRUE(torch::equal(p["cnn.cat_head2.sa.conv_3x3.0.weight"], dan_source->named_parameters()["cat_head2.sa.conv_3x3.0.weight"]));
  EXPECT_TRUE(torch::equal(emma.named_buffers()["cnn.features.1.running_var"], dan_source->named_buffers()["features.1.running_var"]));
  EXPECT_FALSE(p["cnn.fc.weight"].requires_grad());

  // A whole EMMA state dict (the release's names) loads strictly by name.
  safetensors::save(dir / "emma.safetensors", safetensors::state_dict(emma));
  Emma again(EmmaOptions::from(Config::parse("{" + vit + "}")));
  init_weights(again, Config::parse(fmt::format("w: [{{path: {}}}]", (dir / "emma.safetensors").string())).at("w"));
  for (const auto& [name, t] : safetensors::state_dict(emma))
    EXPECT_TRUE(torch::equal(safetensors::state_dict(again).at(name), t)) << name;

  // A checkpoint of another width is an error naming the file, the tensor and both shapes.
  ViTOptions wide = tiny_vit();
  wide.embed_dim = 32;
  safetensors::save(dir / "wide.safetensors", safetensors::state_dict(*ViT(wide)));
  const std::string error = test_support::message_of([&] {
    init_weights(again, Config::parse(fmt::format("w: [{{path: {}, convert: timm_vit, add_prefix: vit.}}]", (dir / "wide.safetensors").string()),
                                      "emma.yaml").at("w"));
  });
  EXPECT_THAT(error, HasSubstr("emma.yaml:1: w[0]: " + (dir / "wide.safetensors").string()));
  EXPECT_THAT(error, HasSubstr("vit.blocks.0.attn.qkv.weight: the model expects [192, 64], the file's blocks.0.attn.qkv.weight is [96, 32]"));
}

TEST(Emma, OptionErrorsNameTheKey) {
  auto message = [](const std::string& yaml) {
    try {
      EmmaOptions::from(Config::parse(yaml, "emma.yaml"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_THAT(message("{head_hidden: 0}"), HasSubstr("head_hidden: expected a positive integer, got 0"));
  EXPECT_THAT(message("{vit: {image_size: 100, patch_size: 16}}"), HasSubstr("is not a multiple of patch_size"));
  EXPECT_THAT(message("{vit: {drop_path: 1.5}}"), HasSubstr("drop_path: expected [0, 1)"));
  EXPECT_EQ(EmmaOptions::from(Config::parse("{vit: {depth: 3}}")).vit.drop_path, 0.1);  // EMMA's default stays
  EmmaOptions o;
  o.vit = tiny_vit();
  Emma emma(o);
  try {
    emma.forward(data::Batch{});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("emma: the batch has no field \"image\""));
  }
}

TEST(Emma, OverfitsOneBatchOfDrawnFaces) {
  // Reduced ViT (64 wide, 2 blocks, 64 px, no stochastic depth) for CPU time; the DAN is the full
  // release network, frozen. Loss: EMMA's three tasks (squared error stands in for the batch CCC,
  // which the training tests check); 8 faces, one per expression.
  torch::manual_seed(0);
  EmmaOptions o;
  o.vit = tiny_vit();
  Emma emma(o);
  emma.train();
  const data::Batch b = emma_batch(8, 64, 3);
  std::vector<torch::Tensor> params;
  for (const auto& p : emma.parameters())
    if (p.requires_grad()) params.push_back(p);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(2e-3));
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    adam.zero_grad();
    const TensorDict out = emma.forward(b);
    const auto loss = torch::mse_loss(out.at("va"), b.fields.at("va")) +
                      torch::cross_entropy_loss(out.at("expression_logits"), b.fields.at("expression")) +
                      torch::binary_cross_entropy_with_logits(out.at("au_logits"), b.fields.at("labels"));
    loss.backward();
    adam.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  std::printf("EMMA overfit: loss %.4f -> %.4f in 150 steps\n", first, last);
  EXPECT_LT(last, 0.05);
  EXPECT_LT(last, first / 20);
}

}  // namespace
}  // namespace facet::models::face::test_emma
