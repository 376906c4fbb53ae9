// Q-Face: outputs per task subset, the parameter count of the documented configuration and its
// parts, option errors, layer ids for layer-wise lr decay, loading MAE/timm and Hugging Face
// backbone weights, and overfitting one batch of drawn faces with every task at once.
#include "core/safetensors.h"
#include "models/face/qface.h"
#include "models/weights/init_weights.h"
#include "tests/models/face_batch.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <functional>

namespace facet::models::face::test_qface {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Shape = std::vector<int64_t>;

// A reduced configuration for CPU speed: the same architecture with a 4-block ViT of width 64 on
// 32 x 32 inputs (patch 8, a 4 x 4 grid) and a 1-layer decoder of width 32.
QFaceOptions small_options(std::vector<std::string> tasks = qface_task_names()) {
  QFaceOptions o;
  o.vit.image_size = 32;
  o.vit.patch_size = 8;
  o.vit.embed_dim = 64;
  o.vit.depth = 4;
  o.vit.num_heads = 4;
  o.mff_blocks = {2, 4};
  o.dim = 32;
  o.num_heads = 4;
  o.num_layers = 1;
  o.dropout = 0;
  o.num_attributes = 5;
  o.tasks = std::move(tasks);
  return o;
}

int64_t count_prefix(const torch::nn::Module& m, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& p : m.named_parameters())
    if (p.key().rfind(prefix, 0) == 0) n += p.value().numel();
  return n;
}

using test_support::message_of;

data::Batch image_batch(int64_t b, int64_t size) {
  data::Batch batch;
  batch.fields["image"] = torch::randn({b, 3, size, size});
  batch.indices = torch::arange(b);
  return batch;
}

TEST(QFace, OutputsExistOnlyForTheSelectedTasks) {
  torch::manual_seed(0);
  const data::Batch b = image_batch(2, 32);
  torch::NoGradGuard no_grad;
  QFace all(small_options());
  all.eval();
  const TensorDict out = all.forward(b);
  EXPECT_EQ(out.at("expression_logits").sizes(), (Shape{2, 7}));
  EXPECT_EQ(out.at("au_logits").sizes(), (Shape{2, 12}));
  EXPECT_EQ(out.at("attribute_logits").sizes(), (Shape{2, 5}));
  EXPECT_EQ(out.at("age").sizes(), (Shape{2}));
  EXPECT_EQ(out.at("pose").sizes(), (Shape{2, 3}));
  EXPECT_FALSE(out.contains("logits"));  // only an AU-only model aliases its AU logits
  EXPECT_FALSE(out.contains("cross_attention"));
  EXPECT_FALSE(out.contains("age_logits"));
  // Bin expectations stay inside their ranges.
  EXPECT_TRUE((out.at("age") >= 0).all().item<bool>() && (out.at("age") <= 100).all().item<bool>());
  EXPECT_TRUE((out.at("pose").abs() <= 99).all().item<bool>());

  QFace au_only(small_options({"au"}));
  au_only.eval();
  const TensorDict au = au_only.forward(b);
  EXPECT_EQ(au.size(), 2u);
  EXPECT_TRUE(torch::equal(au.at("logits"), au.at("au_logits")));

  QFaceOptions o = small_options({"pose", "expression"});
  o.expression_classes = 8;
  o.return_attention = true;
  o.return_bin_logits = true;
  QFace two(o);
  two.eval();
  const TensorDict t = two.forward(b);
  EXPECT_FALSE(t.contains("au_logits"));
  EXPECT_FALSE(t.contains("attribute_logits"));
  EXPECT_FALSE(t.contains("age"));
  EXPECT_EQ(t.at("expression_logits").sizes(), (Shape{2, 8}));
  EXPECT_EQ(t.at("pose_logits").sizes(), (Shape{2, 3, 66}));
  // One pose query then eight expression queries, each attending over the 4 x 4 patches (the CLS
  // token takes the rest of each row's attention).
  const torch::Tensor attn = t.at("cross_attention");
  EXPECT_EQ(attn.sizes(), (Shape{2, 9, 4, 4}));
  EXPECT_TRUE((attn >= 0).all().item<bool>());
  EXPECT_TRUE((attn.sum({2, 3}) <= 1 + 1e-5).all().item<bool>());
  EXPECT_TRUE(torch::allclose(t.at("mff_weights").sum(1), torch::ones({2})));
  // The pose is the bin expectation of its logits.
  const torch::Tensor centres = torch::linspace(-99, 99, 66);
  EXPECT_TRUE(torch::allclose((torch::softmax(t.at("pose_logits"), -1) * centres).sum(-1), t.at("pose"), 1e-4, 1e-4));

  // Concatenation fusion is the other MFF variant.
  QFaceOptions concat = small_options({"age"});
  concat.mff_fusion = "concat";
  QFace c(concat);
  c.eval();
  EXPECT_EQ(c.forward(b).at("age").sizes(), (Shape{2}));
  EXPECT_EQ(count_prefix(c, "mff_proj."), 2 * 64 * 32 + 32);
}

TEST(QFace, ParameterCountOfTheDocumentedConfiguration) {
  QFace net(QFaceOptions{});
  // The reconstruction of qface.h at its defaults (ViT-B/16, 224 px, MFF of blocks 3/6/9/12 to 512,
  // 2 decoder layers of width 512, 7 + 12 + 40 + 1 + 1 queries):
  //   ViT-B/16 (MAE/timm layout, transformers' ViTModel without pooler)              85,798,656
  //   MFF: 3 LayerNorms of 768 (blocks 3, 6, 9; block 12 uses the ViT's norm) 4,608
  //        + 4 Linear 768 -> 512 (4 x 393,728 = 1,574,912) + 4 fusion logits
  //        + the memory LayerNorm 1,024                                               1,580,548
  //   queries: 61 x 512                                                                   31,232
  //   decoder: 2 x (3 LayerNorms 3,072 + self- and cross-attention 2 x 4 x 262,656
  //        + FFN 512 -> 2048 -> 512 2,099,712 = 4,204,032) + final LayerNorm 1,024   8,409,088
  //   heads: expression 7 x 513 + AU 12 x 513 + attributes 40 x 513
  //        + age 512 x 101 + 101 + pose 512 x 198 + 198                                  183,654
  EXPECT_EQ(count_prefix(net, "vit."), 85798656);
  EXPECT_EQ(count_prefix(net, "mff_") + count_prefix(net, "memory_norm."), 1580548);
  int64_t queries = 0;
  for (const auto& task : qface_task_names()) queries += count_prefix(net, task + "_queries");
  EXPECT_EQ(queries, 31232);
  EXPECT_EQ(count_prefix(net, "layers.") + count_prefix(net, "decoder_norm."), 8409088);
  EXPECT_EQ(count_prefix(net, "expression_head.") + count_prefix(net, "au_head.") + count_prefix(net, "attribute_head.") +
                count_prefix(net, "age_head.") + count_prefix(net, "pose_head."),
            183654);
  EXPECT_EQ(testing::parameter_count(net), 96003178);

  // An AU-only Q-Face drops the other 49 queries and four heads.
  QFaceOptions au;
  au.tasks = {"au"};
  QFace au_net(au);
  EXPECT_EQ(testing::parameter_count(au_net), 96003178 - 49 * 512 - (3591 + 20520 + 51813 + 101574));
  // Fusing only the last block (the MFF ablation) keeps one projection.
  QFaceOptions last;
  last.mff_blocks = {12};
  EXPECT_EQ(testing::parameter_count(QFace(last)), 96003178 - 4608 - 3 * 393728 - 3);

  // The full-size forward pass at 224 px.
  net.eval();
  torch::NoGradGuard no_grad;
  const TensorDict out = net.forward(image_batch(1, 224));
  EXPECT_EQ(out.at("expression_logits").sizes(), (Shape{1, 7}));
  EXPECT_EQ(out.at("au_logits").sizes(), (Shape{1, 12}));
  EXPECT_EQ(out.at("attribute_logits").sizes(), (Shape{1, 40}));
  EXPECT_EQ(out.at("pose").sizes(), (Shape{1, 3}));
}

TEST(QFace, OptionErrorsNameTheKey) {
  auto build = [](const std::string& yaml) {
    return message_of([&] { QFaceOptions::from(Config::parse(yaml, "qface.yaml")); });
  };
  EXPECT_THAT(build("{tasks: [au, gender]}"), HasSubstr("tasks: expected tasks among expression, au, attributes, age, pose, got \"gender\""));
  EXPECT_THAT(build("{tasks: [au, au]}"), HasSubstr("\"au\" is listed twice"));
  EXPECT_THAT(build("{tasks: []}"), HasSubstr("tasks: expected at least one of"));
  EXPECT_THAT(build("{mff_blocks: [3, 6, 9]}"), HasSubstr("mff_blocks: expected the last block (12) among them, got 3, 6, 9"));
  EXPECT_THAT(build("{mff_blocks: [6, 3, 12]}"), HasSubstr("mff_blocks: expected increasing block numbers"));
  EXPECT_THAT(build("{mff_blocks: [0, 12]}"), HasSubstr("mff_blocks: expected block numbers in 1..12, got 0"));
  EXPECT_THAT(build("{vit: {depth: 4}, mff_blocks: [2, 4, 6]}"), HasSubstr("expected block numbers in 1..4, got 6"));
  EXPECT_THAT(build("{mff_fusion: attention}"), HasSubstr("mff_fusion: expected weighted or concat, got \"attention\""));
  EXPECT_THAT(build("{dim: 100}"), HasSubstr("dim: expected a positive multiple of num_heads (8), got 100"));
  EXPECT_THAT(build("{age_range: [80, 10]}"), HasSubstr("age_range: expected [min, max] with min < max"));
  EXPECT_THAT(build("{aus: []}"), HasSubstr("aus: expected at least one AU"));
  EXPECT_THAT(build("{tasks: [expression], aus: []}"), HasSubstr("(no error)"));  // AUs unused
  EXPECT_THAT(build("{dim: 100}"), HasSubstr("qface.yaml:1"));
  // The input size is the ViT's.
  QFace net(small_options({"age"}));
  EXPECT_THAT(message_of([&] { net.forward(image_batch(1, 48)); }), HasSubstr("ViT: expected input [B, 3, 32, 32]"));
  data::Batch none;
  EXPECT_THAT(message_of([&] { net.forward(none); }), HasSubstr("qface: the batch has no \"image\" field"));
}

TEST(QFace, LayerIdsFollowTheViTWithTheDecoderOnTop) {
  QFace net(small_options());
  EXPECT_EQ(net.num_layer_ids(), 6);  // embeddings, 4 blocks, final norm
  EXPECT_EQ(net.layer_id("vit.pos_embed"), 0);
  EXPECT_EQ(net.layer_id("vit.blocks.2.attn.qkv.weight"), 3);
  EXPECT_EQ(net.layer_id("vit.norm.weight"), 5);
  EXPECT_EQ(net.layer_id("layers.0.cross_attn.q_proj.weight"), 5);
  EXPECT_EQ(net.layer_id("au_queries"), 5);
  EXPECT_EQ(net.layer_id("mff_proj.0.weight"), 5);
  for (const auto& p : net.named_parameters()) {
    EXPECT_GE(net.layer_id(p.key()), 0) << p.key();
    EXPECT_LT(net.layer_id(p.key()), net.num_layer_ids()) << p.key();
  }
}

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("facet_qface_" + name + "_" + std::to_string(::getpid()) + ".safetensors");
}

// The backbone from a checkpoint, as train.init_weights does it (the constructor reads no file).
void load_backbone(QFace& net, const fs::path& path, const std::string& convert = "timm_vit") {
  init_weights(net, Config::parse(fmt::format("w: [{{path: {}, convert: {}, add_prefix: vit.}}]", path.string(), convert)).at("w"));
}

// A checkpoint of MAE fine-tuning with global pooling: its final norm is fc_norm, beside a classifier.
TEST(QFace, GlobalPoolCheckpointsLendTheirFcNormToTheFinalNorm) {
  torch::manual_seed(2);
  QFaceOptions o = small_options({"au"});
  ViT source(o.vit);
  {
    torch::NoGradGuard no_grad;
    source->norm->weight.uniform_(0.5, 1.5);  // a fresh norm is all ones, like the model's own
  }
  safetensors::TensorMap file;
  for (const auto& [name, t] : safetensors::state_dict(*source))
    file[name.rfind("norm.", 0) == 0 ? "fc_" + name : name] = t;
  file["head.weight"] = torch::zeros({7, o.vit.embed_dim});
  const fs::path path = temp_file("global_pool");
  safetensors::save(path, file);
  QFace net(o);
  load_backbone(net, path);
  const auto loaded = safetensors::state_dict(net);
  EXPECT_TRUE(torch::equal(loaded.at("vit.norm.weight"), source->norm->weight));
  EXPECT_TRUE(torch::equal(loaded.at("vit.blocks.0.attn.qkv.weight"), safetensors::state_dict(*source).at("blocks.0.attn.qkv.weight")));
}

TEST(QFace, LoadsMaeAndHuggingFaceBackbonesAndResizesThePositionTable) {
  torch::manual_seed(1);
  // An MAE pre-training checkpoint of a ViT on 16 px inputs (a 2 x 2 grid): encoder, mask token,
  // decoder, under a DDP prefix and a wrapper's (module.vit.).
  ViTOptions v = small_options().vit;
  v.image_size = 16;
  ViT source(v);
  safetensors::TensorMap mae;
  for (const auto& [name, t] : safetensors::state_dict(*source)) mae["module.vit." + name] = t;
  mae["module.mask_token"] = torch::zeros({1, 1, 64});
  mae["module.decoder_embed.weight"] = torch::zeros({32, 64});
  mae["module.decoder_blocks.0.norm1.weight"] = torch::ones({32});
  const fs::path file = temp_file("mae");
  safetensors::save(file, mae);

  QFaceOptions o = small_options({"au"});
  QFace net(o);
  load_backbone(net, file);
  const auto loaded = safetensors::state_dict(net);
  for (const auto& [name, t] : safetensors::state_dict(*source)) {
    if (name == "pos_embed") continue;
    EXPECT_TRUE(torch::equal(loaded.at("vit." + name), t)) << name;
  }
  // 1 + 2 x 2 rows became 1 + 4 x 4: the CLS row kept, the grid interpolated (a constant grid stays constant).
  const torch::Tensor pos = loaded.at("vit.pos_embed");
  EXPECT_EQ(pos.sizes(), (Shape{1, 17, 64}));
  EXPECT_TRUE(torch::equal(pos[0][0], source->pos_embed[0][0]));
  {
    torch::NoGradGuard no_grad;
    source->pos_embed.narrow(1, 1, 4).copy_(torch::full({1, 4, 64}, 0.25));
  }
  safetensors::TensorMap flat = safetensors::state_dict(*source);
  safetensors::save(file, flat);
  QFace flat_net(o);
  load_backbone(flat_net, file);
  EXPECT_TRUE(torch::allclose(safetensors::state_dict(flat_net).at("vit.pos_embed").narrow(1, 1, 16), torch::full({1, 16, 64}, 0.25)));

  // The same encoder under Hugging Face ViT names (q, k, v apart).
  safetensors::TensorMap hf;
  const auto sd = safetensors::state_dict(*source);
  hf["vit.embeddings.cls_token"] = sd.at("cls_token");
  hf["vit.embeddings.position_embeddings"] = sd.at("pos_embed");
  hf["vit.embeddings.patch_embeddings.projection.weight"] = sd.at("patch_embed.proj.weight");
  hf["vit.embeddings.patch_embeddings.projection.bias"] = sd.at("patch_embed.proj.bias");
  hf["vit.layernorm.weight"] = sd.at("norm.weight");
  hf["vit.layernorm.bias"] = sd.at("norm.bias");
  for (int i = 0; i < 4; ++i) {
    const std::string ours = fmt::format("blocks.{}.", i), theirs = fmt::format("vit.encoder.layer.{}.", i);
    for (const std::string leaf : {"weight", "bias"}) {
      const auto qkv = sd.at(ours + "attn.qkv." + leaf).chunk(3, 0);
      hf[theirs + "attention.attention.query." + leaf] = qkv[0];
      hf[theirs + "attention.attention.key." + leaf] = qkv[1];
      hf[theirs + "attention.attention.value." + leaf] = qkv[2];
      hf[theirs + "attention.output.dense." + leaf] = sd.at(ours + "attn.proj." + leaf);
      hf[theirs + "intermediate.dense." + leaf] = sd.at(ours + "mlp.fc1." + leaf);
      hf[theirs + "output.dense." + leaf] = sd.at(ours + "mlp.fc2." + leaf);
      hf[theirs + "layernorm_before." + leaf] = sd.at(ours + "norm1." + leaf);
      hf[theirs + "layernorm_after." + leaf] = sd.at(ours + "norm2." + leaf);
    }
  }
  hf["classifier.weight"] = torch::zeros({10, 64});
  safetensors::save(file, hf);
  QFace hf_net(o);
  load_backbone(hf_net, file, "hf_vit");
  const auto hf_loaded = safetensors::state_dict(hf_net);
  for (const auto& [name, t] : sd) {
    if (name != "pos_embed") {
      EXPECT_TRUE(torch::equal(hf_loaded.at("vit." + name), t)) << name;
    }
  }

  // A checkpoint of another width is refused, naming the file.
  ViTOptions wide = v;
  wide.embed_dim = 96;
  safetensors::save(file, safetensors::state_dict(*ViT(wide)));
  EXPECT_THAT(message_of([&] { load_backbone(net, file); }), HasSubstr(file.string()));
  fs::remove(file);
}

TEST(QFace, OverfitsOneBatchOfDrawnFacesOnEveryTask) {
  // Reduced for CPU test time (a 4-block ViT of width 96 on 64 px faces, patch 8; decoder width 64,
  // 1 layer); the architecture is the documented one.
  torch::manual_seed(0);
  QFaceOptions o = small_options();
  o.vit.image_size = 64;
  o.vit.embed_dim = 96;
  o.dim = 64;
  o.num_attributes = 4;
  QFace net(o);
  const data::Batch b = testing::drawn_face_batch(8, 64, 3);
  const torch::Tensor expression = torch::arange(8) % 7;
  const torch::Tensor attributes = torch::randint(0, 2, {8, 4}).to(torch::kFloat);
  const torch::Tensor age = torch::rand({8}) * 60 + 18;
  const torch::Tensor pose = torch::rand({8, 3}) * 80 - 40;
  torch::optim::AdamW adam(net.parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0));
  std::array<float, 5> first{}, last{};
  for (int step = 0; step < 200; ++step) {
    adam.zero_grad();
    const TensorDict out = net.forward(b);
    const std::array<torch::Tensor, 5> parts = {
        torch::cross_entropy_loss(out.at("expression_logits"), expression),
        torch::binary_cross_entropy_with_logits(out.at("au_logits"), b.fields.at("labels")),
        torch::binary_cross_entropy_with_logits(out.at("attribute_logits"), attributes),
        (out.at("age") - age).abs().mean(), (out.at("pose") - pose).abs().mean()};
    // Years and degrees scaled down to the classification losses' range.
    (parts[0] + parts[1] + parts[2] + parts[3] / 10 + parts[4] / 10).backward();
    adam.step();
    for (size_t i = 0; i < parts.size(); ++i) (step == 0 ? first : last)[i] = parts[i].item<float>();
  }
  std::printf("Q-Face overfit, 200 steps: expression CE %.3f -> %.4f, AU BCE %.3f -> %.4f, attribute BCE %.3f -> %.4f, "
              "age MAE %.2f -> %.2f years, pose MAE %.2f -> %.2f degrees\n",
              first[0], last[0], first[1], last[1], first[2], last[2], first[3], last[3], first[4], last[4]);
  EXPECT_LT(last[0], 0.05);
  EXPECT_LT(last[1], 0.05);
  EXPECT_LT(last[2], 0.05);
  EXPECT_LT(last[3], 1.5);
  EXPECT_LT(last[4], 2.0);
  for (size_t i = 0; i < 5; ++i) EXPECT_LT(last[i], first[i] / 8) << "task " << i;
}

}  // namespace
}  // namespace facet::models::face::test_qface
