// The one weight-loading path (models/weights): converters on the real names of the reference
// libraries (torchvision's ResNet state dicts, transformers' ViT / ViT-MAE in its in-memory names and
// the hub files' legacy names, from the goldens' metadata), shape and fit messages by their text,
// sharded streaming with content hashes and re-application, construction without initialisation
// (models::Linear, ConstructionScope), and the resident memory of a bf16 build + load.
#include "core/hash.h"
#include "core/safetensors.h"
#include "models/backbones/resnet.h"
#include "models/backbones/vit.h"
#include "models/build.h"
#include "models/face/dan.h"
#include "models/face/emma.h"
#include "models/face/masked_cotex.h"
#include "models/face/mgrr_net.h"
#include "models/layers/construction.h"
#include "models/layers/linear.h"
#include "models/weights/converter.h"
#include "models/weights/init_weights.h"
#include "tests/support/golden_init.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <malloc.h>
#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

namespace facet::models::test_weights {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using test_support::message_of;
using Shape = std::vector<int64_t>;

const fs::path kGoldens = fs::path(test_support::kSourceDir) / "tests/fixtures/backbones";

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_weights", name); }

std::vector<LoadedWeights> load(torch::nn::Module& model, const std::string& entries) {
  return init_weights(model, Config::parse("init_weights: " + entries, "w.yaml").at("init_weights"));
}

// --- converters on the reference libraries' names ---------------------------------------------------

// torchvision's ResNet-18 state dict, by its real names (the golden's), into the three places a
// ResNet sits in Facet models: the `resnet` classifier (under net.), a stride-16 trunk (under
// backbone., without layer4 and fc), and DAN's Sequential trunk (features.0/1/4..7).
TEST(Converters, TorchvisionResnetFindsTheResnetInAnyModel) {
  const safetensors::File golden(kGoldens / "resnet18.safetensors");
  const auto tv = testing::golden_init(testing::golden_shapes(golden));
  ASSERT_TRUE(tv.contains("layer4.1.bn2.num_batches_tracked"));
  ASSERT_TRUE(tv.contains("fc.weight"));
  const fs::path dir = fresh_dir("torchvision");
  safetensors::save(dir / "resnet18.safetensors", tv);
  const std::string file = (dir / "resnet18.safetensors").string();

  auto classifier = model_registry().create(Config::parse("{name: resnet, depth: 18, num_classes: 1000}"));
  const auto records = load(*classifier, fmt::format("[{{path: {}, convert: torchvision_resnet}}]", file));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].tensors.size(), tv.size());  // everything, num_batches_tracked included
  const auto loaded = safetensors::state_dict(*classifier);
  for (const auto& [name, t] : tv) EXPECT_TRUE(torch::equal(loaded.at("net." + name), t)) << name;

  // Without the converter the names are off by the model's prefix: the error says which.
  auto fresh = model_registry().create(Config::parse("{name: resnet, depth: 18, num_classes: 1000}"));
  const std::string error = message_of([&] { load(*fresh, fmt::format("[{{path: {}}}]", file)); });
  EXPECT_THAT(error, HasSubstr("w.yaml:1: init_weights[0]: " + file + ": does not fit the model (0 of its tensors would load)"));
  EXPECT_THAT(error, HasSubstr("model tensors the file lacks: 122 tensors: net.bn1.* (5), net.conv1.weight, net.fc.* (2), net.layer1.* ("));
  EXPECT_THAT(error, HasSubstr("they match with `add_prefix: net.`"));
  EXPECT_LT(error.size(), 1000u);  // counts and a few names, not 244 names
  load(*fresh, fmt::format("[{{path: {}, add_prefix: net.}}]", file));  // and the suggestion works
  EXPECT_TRUE(torch::equal(safetensors::state_dict(*fresh).at("net.layer3.1.conv2.weight"), tv.at("layer3.1.conv2.weight")));

  face::MGRRNetOptions mo;
  mo.backbone_depth = 18;
  mo.dim = 64;
  face::MGRRNet mgrr(mo);
  load(mgrr, fmt::format("[{{path: {}, convert: torchvision_resnet}}]", file));  // finds backbone., drops layer4 and fc
  EXPECT_TRUE(torch::equal(mgrr.named_parameters()["backbone.layer3.0.downsample.0.weight"], tv.at("layer3.0.downsample.0.weight")));

  face::Dan dan;
  load(*dan, fmt::format("[{{path: {}, convert: torchvision_resnet}}]", file));  // features.N; DAN's heads stay
  const auto d = safetensors::state_dict(*dan);
  EXPECT_TRUE(torch::equal(d.at("features.0.weight"), tv.at("conv1.weight")));
  EXPECT_TRUE(torch::equal(d.at("features.1.running_var"), tv.at("bn1.running_var")));
  EXPECT_TRUE(torch::equal(d.at("features.7.1.conv2.weight"), tv.at("layer4.1.conv2.weight")));

  // EMMA holds a ViT and DAN's trunk: the converter finds the trunk (cnn.features.) by itself.
  const std::string tiny_vit = "vit: {image_size: 32, patch_size: 16, embed_dim: 32, depth: 1, num_heads: 2}";
  face::Emma emma(face::EmmaOptions::from(Config::parse("{" + tiny_vit + "}")));
  load(emma, fmt::format("[{{path: {}, convert: torchvision_resnet}}]", file));
  EXPECT_TRUE(torch::equal(safetensors::state_dict(emma).at("cnn.features.6.1.conv1.weight"), tv.at("layer3.1.conv1.weight")));
  EXPECT_THAT(message_of([&] { load(emma, fmt::format("[{{path: {}, convert: timm_vit, add_prefix: cnn.}}]", file)); }),
              HasSubstr("convert: timm_vit: the model (in this entry's scope) has no ViT"));
  // Two ViTs in one model: the converter asks which; a misspelt converter gets a suggestion.
  face::MaskedCotex cotex(face::MaskedCotexOptions::from(Config::parse("{" + tiny_vit + "}")));
  EXPECT_THAT(message_of([&] { load(cotex, fmt::format("[{{path: {}, convert: timm_vit}}]", file)); }),
              HasSubstr("convert: timm_vit: the model holds 2 ViTs (vits.0., vits.1.); choose one with add_prefix"));
  EXPECT_THAT(message_of([&] { load(cotex, fmt::format("[{{path: {}, convert: hf-vit}}]", file)); }),
              HasSubstr("w.yaml:1: init_weights[0].convert: unknown converter \"hf-vit\" (did you mean \"hf_vit\"?); registered: diffusers_unet, "
                        "diffusers_vae, facet, hf_clip_text, hf_clip_vision, hf_vit, llava, minigpt_v2, sd_single_file, timm_vit, "
                        "torchvision_densenet, torchvision_resnet"));
}

// Hugging Face ViT and ViT-MAE weights under the names transformers 5 uses in memory
// (layers.N.attention.q_proj...) and the names the hub's files still carry
// (encoder.layer.N.attention.attention.query..., from transformers' own conversion table, stored in
// the golden's metadata), at a narrow width so the test writes kilobytes, not 350 MB.
TEST(Converters, HfVitTakesModernAndLegacyHubNames) {
  for (const char* golden_name : {"vit_b16.safetensors", "vit_mae_b16.safetensors"}) {
    SCOPED_TRACE(golden_name);
    const safetensors::File golden(kGoldens / golden_name);
    const auto legacy = nlohmann::json::parse(golden.metadata().at("checkpoint_names")).get<std::map<std::string, std::string>>();
    auto shapes = testing::golden_shapes(golden);
    for (auto& [name, shape] : shapes)  // 768 -> 32 wide, 3072 -> 128, same names and grid
      for (auto& d : shape) d = d == 768 ? 32 : d == 3072 ? 128 : d;
    const auto modern = testing::golden_init(shapes);
    safetensors::TensorMap hub;
    for (const auto& [name, t] : modern) hub["vit." + legacy.at(name)] = t;  // *ForPreTraining / *ForImageClassification files
    hub["vit.embeddings.mask_token"] = torch::zeros({1, 1, 32});
    hub["decoder.decoder_embed.weight"] = torch::zeros({16, 32});
    hub["classifier.weight"] = torch::zeros({5, 32});
    ASSERT_TRUE(hub.contains("vit.encoder.layer.11.attention.attention.query.weight"));
    const fs::path dir = fresh_dir("hf_vit");
    safetensors::save(dir / "modern.safetensors", modern);
    safetensors::save(dir / "hub.safetensors", hub);

    const std::string vit = "{name: vit, embed_dim: 32, depth: 12, num_heads: 2, num_classes: 3}";
    auto a = model_registry().create(Config::parse(vit)), b = model_registry().create(Config::parse(vit));
    load(*a, fmt::format("[{{path: {}, convert: hf_vit}}]", (dir / "modern.safetensors").string()));
    load(*b, fmt::format("[{{path: {}, convert: hf_vit}}]", (dir / "hub.safetensors").string()));
    const auto sa = safetensors::state_dict(*a), sb = safetensors::state_dict(*b);
    const auto expected = convert_hf_vit(modern);
    for (const auto& [name, t] : expected) {
      EXPECT_TRUE(torch::equal(sa.at("vit." + name), t)) << name;
      EXPECT_TRUE(torch::equal(sb.at("vit." + name), t)) << name;
    }
    // q, k and v stacked in that order.
    EXPECT_TRUE(torch::equal(sb.at("vit.blocks.3.attn.qkv.weight").narrow(0, 32, 32), modern.at("layers.3.attention.k_proj.weight")));
    EXPECT_TRUE(torch::equal(sb.at("vit.norm.bias"), modern.at("layernorm.bias")));

    // Into a ViT of another input size: the position table follows the model's grid (14x14 -> 7x7).
    auto small = model_registry().create(Config::parse("{name: vit, image_size: 112, embed_dim: 32, depth: 12, num_heads: 2, num_classes: 3}"));
    load(*small, fmt::format("[{{path: {}, convert: hf_vit}}]", (dir / "hub.safetensors").string()));
    EXPECT_TRUE(torch::equal(safetensors::state_dict(*small).at("vit.pos_embed"),
                             resize_position_embedding(modern.at("embeddings.position_embeddings"), 7)));
  }
}

TEST(Converters, TimmVitStripsPrefixesDropsTheDecoderAndResizes) {
  ViTOptions v;
  v.image_size = 32;
  v.patch_size = 8;
  v.embed_dim = 32;
  v.depth = 2;
  v.num_heads = 2;
  torch::manual_seed(3);
  ViT source(v);  // a 4x4 grid
  safetensors::TensorMap mae;
  for (const auto& [name, t] : safetensors::state_dict(*source)) mae["module." + name] = t;
  mae["module.mask_token"] = torch::zeros({1, 1, 32});
  mae["module.decoder_pred.weight"] = torch::zeros({192, 32});
  mae["module.head.weight"] = torch::zeros({1000, 32});
  const fs::path dir = fresh_dir("timm");
  safetensors::save(dir / "mae.safetensors", mae);
  auto model = model_registry().create(Config::parse("{name: vit, image_size: 64, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 6}"));
  const auto records = load(*model, fmt::format("[{{path: {}, convert: timm_vit}}]", (dir / "mae.safetensors").string()));
  EXPECT_EQ(records[0].tensors.size(), safetensors::state_dict(*source).size());  // the model's head is not the file's
  const auto s = safetensors::state_dict(*model);
  EXPECT_TRUE(torch::equal(s.at("vit.blocks.1.mlp.fc2.weight"), source->blocks[1]->as<ViTBlock>()->mlp->fc2->weight));
  EXPECT_EQ(s.at("vit.pos_embed").sizes(), (Shape{1, 65, 32}));
  EXPECT_TRUE(torch::equal(s.at("vit.pos_embed"), resize_position_embedding(source->pos_embed, 8)));
}

// --- messages -------------------------------------------------------------------------------------

TEST(InitWeightsMessages, ShapesFitAndEntriesAreCheckedBeforeAnythingLoads) {
  const fs::path dir = fresh_dir("messages");
  auto model = model_registry().create(Config::parse("{name: vit, image_size: 32, patch_size: 16, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 4}"));
  auto file = safetensors::state_dict(*model);
  for (auto& [name, t] : file) t = t.detach().clone() + 1;
  file["head.weight"] = torch::zeros({7, 32});  // a head of another task
  safetensors::save(dir / "other.safetensors", file);
  const auto before = safetensors::state_dict(*model).at("vit.blocks.0.norm1.weight").clone();
  const std::string path = (dir / "other.safetensors").string();
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}}}]", path)); }),
              HasSubstr("w.yaml:1: init_weights[0]: " + path + ": 1 tensor of another shape: head.weight: the model expects [4, 32], the file's head.weight is [7, 32]"));
  // Nothing was copied: the shapes are checked first.
  EXPECT_TRUE(torch::equal(safetensors::state_dict(*model).at("vit.blocks.0.norm1.weight"), before));
  // Ignoring the head leaves it as it is; the rest loads.
  load(*model, fmt::format("[{{path: {}, ignore: ['^head\\.']}}]", path));
  EXPECT_TRUE(torch::equal(safetensors::state_dict(*model).at("vit.blocks.0.norm1.weight"), before + 1));

  // A file under a wrapper's prefix: strip_prefix is suggested.
  safetensors::TensorMap wrapped;
  for (const auto& [name, t] : safetensors::state_dict(*model)) wrapped["module." + name] = t;
  safetensors::save(dir / "wrapped.safetensors", wrapped);
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}}}]", (dir / "wrapped.safetensors").string())); }),
              HasSubstr("they match with `strip_prefix: module.`"));
  load(*model, fmt::format("[{{path: {}, strip_prefix: module.}}]", (dir / "wrapped.safetensors").string()));

  // Entry keys and values.
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}, add_prefx: vit.}}]", path)); }),
              HasSubstr("w.yaml:1: init_weights[0].add_prefx: unknown key (did you mean add_prefix?)"));
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}, ignore: ['(']}}]", path)); }),
              HasSubstr("init_weights[0].ignore: \"(\" is not a valid regular expression"));
  EXPECT_THAT(message_of([&] { load(*model, "[{path: /nonexistent/weights.safetensors}]"); }),
              HasSubstr("w.yaml:1: init_weights[0].path: /nonexistent/weights.safetensors: no such file"));
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}, add_prefix: vits.}}]", path)); }),
              HasSubstr("the model has no tensor under add_prefix \"vits.\""));
}

TEST(InitWeightsMessages, LongNameListsAreSummarised) {
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) names.push_back(fmt::format("vit.blocks.{}.attn.qkv.weight", i));
  names.push_back("head.weight");
  names.push_back("head.bias");
  const std::string s = summarize_names(names);
  EXPECT_EQ(s, "302 tensors: head.* (2), vit.* (300); e.g. vit.blocks.0.attn.qkv.weight, head.weight, vit.blocks.1.attn.qkv.weight, "
               "vit.blocks.2.attn.qkv.weight, ...");
  EXPECT_EQ(summarize_names({"cnn.a.weight", "cnn.b.weight"}), "2 tensors: cnn.a.weight, cnn.b.weight");
  EXPECT_EQ(summarize_names({"head.weight"}), "1 tensor: head.weight");
  EXPECT_EQ(suggest_prefix({"net.a.weight", "net.b.weight", "net.fc.weight"}, {"a.weight", "b.weight"}), "add_prefix: net.");
  EXPECT_EQ(suggest_prefix({"a.weight"}, {"module.a.weight"}), "strip_prefix: module.");
  EXPECT_EQ(suggest_prefix({"vits.0.a.weight"}, {"vit.a.weight"}), "strip_prefix: vit., add_prefix: vits.0.");
  EXPECT_EQ(suggest_prefix({"a.weight"}, {"b.weight"}), std::nullopt);
}

// --- streaming, records, re-application -----------------------------------------------------------

TEST(InitWeightsRecords, ShardedCheckpointsStreamAndTheirHashIsRecorded) {
  const fs::path dir = fresh_dir("sharded");
  const std::string vit = "{name: vit, image_size: 32, patch_size: 16, embed_dim: 32, depth: 3, num_heads: 2, num_classes: 4}";
  torch::manual_seed(5);
  auto source = model_registry().create(Config::parse(vit));
  safetensors::TensorMap bf16;
  for (const auto& [name, t] : safetensors::state_dict(*source)) bf16[name] = t.detach().to(torch::kBFloat16);
  safetensors::save_sharded(dir / "ckpt", bf16, /*max_shard_bytes=*/8 << 10);
  ASSERT_TRUE(fs::exists(dir / "ckpt" / "model.safetensors.index.json"));

  auto model = model_registry().create(Config::parse(vit));  // float32: converted in the copy
  const auto records = load(*model, fmt::format("[{{path: {}, ignore: ['^head\\.']}}]", (dir / "ckpt").string()));
  ASSERT_EQ(records.size(), 1u);
  for (const auto& [name, t] : safetensors::state_dict(*model))
    if (!name.starts_with("head.")) {
      EXPECT_TRUE(torch::equal(t, bf16.at(name).to(torch::kFloat))) << name;
    }
  // The hash is XXH64 over the index and then the shards in name order, as `cat ... | xxhsum` gives it.
  Hash64 h;
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir / "ckpt"))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  ASSERT_GT(shards.size(), 2u);
  for (const auto& p : std::vector<fs::path>{dir / "ckpt" / "model.safetensors.index.json"}) {
    const std::string bytes = read_file(p);
    h.update(bytes.data(), bytes.size());
  }
  for (const auto& p : shards) {
    const std::string bytes = read_file(p);
    h.update(bytes.data(), bytes.size());
  }
  EXPECT_EQ(records[0].content_hash, "xxh64:" + h.hex());
  EXPECT_EQ(records[0].path, (dir / "ckpt").string());
  EXPECT_EQ(records[0].tensors.size(), bf16.size() - 2);
  EXPECT_TRUE(std::is_sorted(records[0].tensors.begin(), records[0].tensors.end()));
  EXPECT_EQ(Config::parse(records[0].entry_yaml).get<std::vector<std::string>>("ignore"), std::vector<std::string>{"^head\\."});

  // Re-applied later (a resume): the same tensors again, while the file is unchanged.
  auto resumed = model_registry().create(Config::parse(vit));
  const LoadedWeights again = reapply_weights(*resumed, records[0]);
  EXPECT_EQ(again.tensors, records[0].tensors);
  EXPECT_TRUE(torch::equal(safetensors::state_dict(*resumed).at("vit.blocks.2.attn.qkv.weight"),
                           safetensors::state_dict(*model).at("vit.blocks.2.attn.qkv.weight")));
  // One changed byte in a shard's data, and the record no longer applies.
  {
    std::fstream f(shards[1], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  const std::string error = message_of([&] { reapply_weights(*resumed, records[0]); });
  EXPECT_THAT(error, HasSubstr((dir / "ckpt").string() + ": the file changed since its weights were recorded: content hash xxh64:"));
  EXPECT_THAT(error, HasSubstr("recorded " + records[0].content_hash));
}

// --- construction without initialisation ----------------------------------------------------------

TEST(Construction, LinearIsTorchsLinearUnlessDeferred) {
  torch::manual_seed(9);
  torch::nn::Linear reference(24, 10);
  torch::manual_seed(9);
  Linear ours(24, 10);
  EXPECT_TRUE(torch::equal(ours->weight, reference->weight));  // same draws, same order
  EXPECT_TRUE(torch::equal(ours->bias, reference->bias));
  std::vector<std::string> names;
  for (const auto& p : ours->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias"}));
  const auto x = torch::randn({3, 24});
  EXPECT_TRUE(torch::allclose(ours(x), reference(x)));
  EXPECT_EQ(Linear(LinearOptions(4, 2).bias(false))->named_parameters().size(), 1u);

  ConstructionScope scope(torch::kBFloat16, /*defer_init=*/true);
  Linear deferred(4096, 4096);
  EXPECT_EQ(deferred->weight.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(is_uninitialized(deferred->weight));
  EXPECT_EQ(uninitialized_tensors(*deferred), (std::vector<std::string>{"weight", "bias"}));
  {
    ConstructionScope inner(torch::kFloat32, /*defer_init=*/false);  // scopes nest
    EXPECT_FALSE(is_uninitialized(Linear(2, 2)->weight));
  }
  EXPECT_TRUE(deferring_init());
}

TEST(Construction, DeferredBuildsMustBeCoveredByTheirWeights) {
  const fs::path dir = fresh_dir("deferred");
  const auto node = Config::parse("{name: vit, image_size: 32, patch_size: 16, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 4}");
  auto source = build_model(node, {torch::kBFloat16, false});
  EXPECT_EQ(safetensors::state_dict(*source).at("vit.norm.weight").scalar_type(), torch::kBFloat16);  // LayerNorm cast too
  auto file = safetensors::state_dict(*source);
  safetensors::save(dir / "full.safetensors", file);
  file.erase("vit.blocks.1.mlp.fc2.weight");
  safetensors::save(dir / "partial.safetensors", file);

  auto model = build_model(node, {torch::kBFloat16, true});
  const auto pending = uninitialized_tensors(*model);
  EXPECT_EQ(pending.size(), 22u);  // all 32 tensors but the 5 LayerNorms' 10
  EXPECT_THAT(pending, ::testing::Contains("vit.blocks.0.attn.qkv.weight"));
  EXPECT_THAT(pending, ::testing::Contains("vit.patch_embed.proj.weight"));
  EXPECT_THAT(pending, ::testing::Contains("head.bias"));
  EXPECT_THAT(pending, Not(::testing::Contains("vit.norm.weight")));  // LibTorch's LayerNorm initialises itself
  EXPECT_THAT(message_of([&] { load(*model, fmt::format("[{{path: {}, strict: false}}]", (dir / "partial.safetensors").string())); }),
              HasSubstr("1 tensor was never loaded after a build without initialisation (their values are garbage): "
                        "vit.blocks.1.mlp.fc2.weight"));
  load(*model, fmt::format("[{{path: {}}}]", (dir / "full.safetensors").string()));
  EXPECT_TRUE(uninitialized_tensors(*model).empty());
  const auto x = torch::randn({2, 3, 32, 32}).to(torch::kBFloat16);
  data::Batch batch;
  batch.fields["image"] = x;
  source->eval();
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(model->forward(batch).at("logits"), source->forward(batch).at("logits")));
}

// The 7B load of the README at 1/80 scale, measured in this process: a ViT-B/16 (86 M parameters)
// built in bf16 without initialisation and loaded from a bf16 file grows the resident set by about
// its bf16 size — not by a float32 copy, nor by the mapped file on top (the pages of each tensor are
// dropped once it is copied).
int64_t status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with(key + ":")) return std::stoll(line.substr(key.size() + 1)) * 1024;
  return -1;
}

TEST(WeightsMemory, Bf16BuildAndLoadGrowsTheResidentSetByTheBf16SizeOnly) {
  const fs::path dir = fresh_dir("memory");
  const auto node = Config::parse("{name: vit, embed_dim: 768, depth: 12, num_heads: 12, num_classes: 1000}");
  int64_t bf16_bytes = 0;
  {
    auto source = build_model(node, {torch::kBFloat16, false});
    for (const auto& [name, t] : safetensors::state_dict(*source)) bf16_bytes += t.numel() * 2;
    safetensors::save(dir / "vit_b16_bf16.safetensors", safetensors::state_dict(*source));
  }
  EXPECT_GT(bf16_bytes, 170'000'000);  // 86.6 M parameters
  ::malloc_trim(0);  // what the writer freed must not be re-used (and hide the growth)
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // VmHWM := VmRSS
  }
  const int64_t before = status_bytes("VmRSS");
  ASSERT_GT(before, 0);
  ASSERT_LE(status_bytes("VmHWM") - before, 4 << 20) << "/proc/self/clear_refs did not reset the peak";
  auto model = build_model(node, {torch::kBFloat16, true});
  load(*model, fmt::format("[{{path: {}}}]", (dir / "vit_b16_bf16.safetensors").string()));
  const int64_t growth = status_bytes("VmHWM") - before;
  std::printf("bf16 size %.1f MB, peak resident growth during build + load %.1f MB\n", static_cast<double>(bf16_bytes) / 1e6,
              static_cast<double>(growth) / 1e6);
  EXPECT_TRUE(uninitialized_tensors(*model).empty());
  EXPECT_GT(growth, 0.9 * static_cast<double>(bf16_bytes));             // the weights are really there
  EXPECT_LT(growth, 1.1 * static_cast<double>(bf16_bytes) + 24e6);      // and nothing twice
  fs::remove_all(dir);
}

// Model constructors read no files: the old options are unknown keys now (the config check names them).
TEST(InitWeightsMessages, ModelConstructorsReadNoFiles) {
  for (const char* yaml : {"{name: emma, vit: {image_size: 32, patch_size: 16, embed_dim: 32, depth: 1, num_heads: 2}, "
                           "vit_checkpoint: /nonexistent/mae.safetensors}",
                           "{name: qface, vit: {image_size: 32, patch_size: 16, embed_dim: 32, depth: 1, num_heads: 2}, "
                           "mff_blocks: [1], dim: 32, num_heads: 2, num_layers: 1, pretrained: /nonexistent/mae.safetensors}",
                           "{name: masked_cotex, vit: {image_size: 32, patch_size: 16, embed_dim: 32, depth: 1, num_heads: 2}, "
                           "vit_checkpoints: [/nonexistent/mae.safetensors]}",
                           "{name: algr_net, backbone_depth: 18, dim: 32, backbone_weights: /nonexistent/resnet.safetensors}"}) {
    const Config c = Config::parse(yaml, "m.yaml");
    EXPECT_NO_THROW(model_registry().create(c)) << yaml;
    EXPECT_THAT(message_of([&] { c.check_unused(); }), HasSubstr("unknown key (nothing reads it)")) << yaml;
  }
}

}  // namespace
}  // namespace facet::models::test_weights
