// The A3D DenseNet-121 backbone and its SATr blocks against the PyTorch transcription of the release
// (tools/golden/a3d_golden.py, itself checked against the released Trans_with_A3D with identical
// outputs): parity with SATr on all, none and one stage, parameter counts at the paper's
// configuration (7 slices, 512-wide FPN-lite), the ImageNet converter on torchvision's real names,
// frozen BatchNorm, errors.
#include "tests/support/tensors.h"
#include "core/safetensors.h"
#include "models/backbones/a3d_densenet.h"
#include "models/weights/init_weights.h"
#include "tests/support/paths.h"
#include "tests/support/golden_init.h"
#include "tests/support/scratch.h"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::models::test_a3d {
namespace {

namespace fs = std::filesystem;
using test_support::parameter_count;
using test_support::expect_close;
using ::testing::HasSubstr;
const fs::path kGoldens = fs::path(test_support::kSourceDir) / "tests/fixtures/a3d";

A3DDenseNetOptions paper_options(std::array<bool, 3> satr) {
  A3DDenseNetOptions o;  // defaults: 7 slices, growth 32, blocks 6/12/24, 512-wide output
  o.satr_stages = satr;
  return o;
}

struct Case {
  std::string file;
  std::array<bool, 3> satr;
  int64_t parameters;  // the transcription's count (= the release's for the first two)
};

class A3DParity : public ::testing::TestWithParam<Case> {};

TEST_P(A3DParity, MatchesTheTranscriptionOfTheRelease) {
  const Case& c = GetParam();
  const safetensors::File golden(kGoldens / (c.file + ".safetensors"));
  A3DDenseNet net(paper_options(c.satr));
  EXPECT_EQ(parameter_count(*net), c.parameters);
  EXPECT_EQ(parameter_count(*net), std::stoll(golden.metadata().at("num_parameters")));
  const auto satr = nlohmann::json::parse(golden.metadata().at("satr_stages")).get<std::vector<bool>>();
  ASSERT_EQ(satr, std::vector<bool>(c.satr.begin(), c.satr.end()));
  // Strict: every name and shape of the release is here and nothing else.
  safetensors::load_into(*net, testing::golden_init(testing::golden_shapes(golden)), {}, true, "golden");
  net->eval();
  torch::NoGradGuard no_grad;
  A3DStageOutputs stages;
  const auto y = net->forward(golden.tensor("input"), &stages);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 512, 16, 24}));
  expect_close(y.narrow(1, 0, 16), golden.tensor("out_head"), 1e-4, "out_head");
  expect_close(y.mean(std::vector<int64_t>{0, 2, 3}), golden.tensor("out_channel_mean"), 1e-4, "out_channel_mean");
  expect_close(y.mean(std::vector<int64_t>{0, 1}), golden.tensor("out_spatial_mean"), 1e-4, "out_spatial_mean");
  for (int s = 1; s <= 3; ++s) {
    expect_close(stages.fused[static_cast<size_t>(s - 1)].mean(std::vector<int64_t>{0, 2, 3}), golden.tensor(fmt::format("redc{}", s)), 1e-4,
                 fmt::format("redc{}", s));
    const auto& tokens = stages.tokens[static_cast<size_t>(s - 1)];
    EXPECT_EQ(tokens.defined(), c.satr[static_cast<size_t>(s - 1)]) << s;
    if (tokens.defined()) {
      ASSERT_EQ(tokens.sizes(), (std::vector<int64_t>{1, 1 + 2 * 3, 384})) << s;  // 64x96 input: a 2x3 grid + CLS
      expect_close(tokens, golden.tensor(fmt::format("tokens{}", s)), 1e-4, fmt::format("tokens{}", s));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Stages, A3DParity,
                         ::testing::Values(Case{"a3d_satr", {true, true, true}, 109772201},
                                           Case{"a3d", {false, false, false}, 16039209},
                                           Case{"a3d_satr_stage2", {false, true, false}, 43154345}),
                         [](const auto& info) { return info.param.file; });

TEST(A3DDenseNet, RegisteredBackboneOneStride4Map) {
  auto b = backbone_registry().create(Config::parse("{name: a3d_densenet121, num_slices: 3, out_channels: 32}"));
  const auto info = b->feature_info();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].name, "p2");
  EXPECT_EQ(info[0].stride, 4);
  EXPECT_EQ(info[0].channels, 32);
  b->eval();
  torch::NoGradGuard no_grad;
  const auto maps = b->forward_features(torch::randn({2, 3, 32, 48}));
  EXPECT_EQ(maps.at("p2").sizes(), (std::vector<int64_t>{2, 32, 8, 12}));
  // The override that switches SATr on: its modules appear, under the release's names.
  auto satr = backbone_registry().create(
      Config::parse("{name: a3d_densenet121, num_slices: 3, out_channels: 32, satr_stages: [false, false, true]}"));
  std::vector<std::string> names;
  for (const auto& p : satr->named_parameters()) names.push_back(p.key());
  EXPECT_THAT(names, ::testing::Contains("trans_block3.attn.qk.weight"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("trans_block1.attn.qk.weight")));
  EXPECT_EQ(satr->named_parameters()["trans_block3.attn.qk.weight"].sizes(), (std::vector<int64_t>{768, 2 * 384}));
}

TEST(A3DDenseNet, ErrorsNameTheKey) {
  auto message = [](const std::string& yaml) {
    return test_support::message_of([&] { backbone_registry().create(Config::parse(yaml, "b.yaml")); });
  };
  EXPECT_THAT(message("{name: a3d_densenet121, num_slices: 4}"), HasSubstr("num_slices: expected an odd number of slices"));
  EXPECT_THAT(message("{name: a3d_densenet121, satr_stages: [true, true]}"), HasSubstr("satr_stages: expected one flag per dense stage"));
  EXPECT_THAT(message("{name: a3d_densenet121, norm: group}"), HasSubstr("norm: expected batch or frozen, got \"group\""));
  EXPECT_THAT(message("{name: a3d_densenet121, num_slices: 1, satr_stages: [true, false, false]}"),
              HasSubstr("needs num_slices >= 3"));
  A3DDenseNet net(paper_options({true, false, false}));
  EXPECT_THAT(test_support::message_of([&] { net->forward(torch::zeros({1, 3, 64, 64})); }),
              HasSubstr("expected slices [B, 7, H, W], got [1, 3, 64, 64]"));
  EXPECT_THAT(test_support::message_of([&] { net->forward(torch::zeros({1, 7, 48, 64})); }),
              HasSubstr("H and W must be multiples of 32"));
}

// A 3-slice network with SATr on every stage learns: its loss on a fixed target falls, gradients
// reach the slice mixing, the SATr blocks and the trunk, and drop path is active in training only.
TEST(A3DDenseNet, TrainsWithSATr) {
  torch::manual_seed(0);
  A3DDenseNetOptions o;
  o.num_slices = 3;
  o.out_channels = 8;
  o.satr_stages = {true, true, true};
  o.satr.embed_dim = 48;  // a narrow SATr keeps the test fast; the paper's width is checked by parity
  o.satr.num_heads = 2;
  o.satr.drop_path = 0.0;
  A3DDenseNet net(o);
  const auto x = torch::randn({2, 3, 32, 32});
  // A target the trunk can express: the key slice, average-pooled to stride 4, on every channel.
  const auto target = torch::avg_pool2d(x.narrow(1, 1, 1), {4, 4}).expand({2, 8, 8, 8});
  torch::optim::Adam opt(net->parameters(), 1e-3);
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    const auto loss = torch::mse_loss(net->forward(x), target);
    loss.backward();
    if (step == 0) {
      const auto params = net->named_parameters();
      for (const char* name : {"denseblock1.denselayer1.conv1.adaptive_align_weights", "trans_block1.attn.qk.weight",
                               "squeeze_block2.conv_project3.weight", "trans_patch_conv3.weight", "conv0.weight"})
        EXPECT_GT(params[name].grad().abs().sum().item<double>(), 0) << name;
      EXPECT_FALSE(params["conv0.adaptive_align_weights"].requires_grad());  // kept for the names, never applied
      first = loss.item<double>();
    }
    last = loss.item<double>();
    opt.step();
  }
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}

TEST(A3DDenseNet, FrozenBatchNormKeepsStatistics) {
  A3DDenseNetOptions o;
  o.num_slices = 3;
  o.out_channels = 8;
  o.norm = "frozen";
  A3DDenseNet net(o);
  net->train();
  const auto before = net->norm0->running_mean.clone();
  const auto y = net->forward(torch::randn({2, 3, 32, 32}) * 3 + 1);
  EXPECT_TRUE(torch::equal(before, net->norm0->running_mean));
  EXPECT_FALSE(net->norm0->weight.requires_grad());
  EXPECT_TRUE(net->is_training());
  EXPECT_FALSE(net->norm0->is_training());
  y.sum().backward();
  EXPECT_TRUE(net->conv0->weight.grad().defined());
  o.norm = "batch";
  A3DDenseNet moving(o);
  moving->train();
  moving->forward(torch::randn({2, 3, 32, 32}) * 3 + 1);
  EXPECT_FALSE(torch::equal(before, moving->norm0->running_mean));
}

// ImageNet weights by torchvision's real names (recorded by the golden script from torchvision's
// densenet121): everything of stages 1-3 loads, conv0 keeps the green channel, the rest is dropped.
TEST(A3DDenseNet, LoadsTorchvisionDenseNet121) {
  const safetensors::File golden(kGoldens / "a3d.safetensors");
  const auto shapes = nlohmann::json::parse(golden.metadata().at("torchvision_densenet121_shapes"))
                          .get<std::map<std::string, std::vector<int64_t>>>();
  ASSERT_EQ(shapes.at("features.conv0.weight"), (std::vector<int64_t>{64, 3, 7, 7}));
  safetensors::TensorMap file;
  int64_t i = 0;
  for (const auto& [name, shape] : shapes)
    file[name] = name.ends_with("num_batches_tracked") ? torch::zeros(shape, torch::kLong)
                                                        : torch::full(shape, static_cast<float>(++i));
  file["features.conv0.weight"] = torch::arange(3, torch::kFloat).view({1, 3, 1, 1}).expand({64, 3, 7, 7}).contiguous();
  const fs::path path = test_support::scratch_dir("facet_test_a3d", "tv") / "densenet121.safetensors";
  safetensors::save(path, file);
  A3DDenseNet net(paper_options({false, false, false}));
  const auto loaded = init_weights(*net, Config::parse(fmt::format("w: [{{path: {}, convert: torchvision_densenet}}]", path.string()), "w.yaml").at("w"));
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(torch::all(net->conv0->weight == 1.0f).item<bool>());  // the green channel
  const auto params = net->named_parameters();
  EXPECT_TRUE(torch::equal(params["denseblock3.denselayer24.conv2.weight"], file.at("features.denseblock3.denselayer24.conv2.weight")));
  EXPECT_TRUE(torch::equal(net->named_buffers()["transition2.norm.running_var"], file.at("features.transition2.norm.running_var")));
  // What the release leaves at its initialisation: slice mixing, reductions, laterals.
  for (const auto& name : loaded[0].tensors) {
    EXPECT_EQ(name.find("adaptive_align_weights"), std::string::npos) << name;
    EXPECT_FALSE(name.starts_with("lateral") || name.starts_with("reductionz")) << name;
  }
  // 3 convolutions + 2 BN per dense layer (2 tensors + 2 stats + counter each) ... : every trunk tensor
  // of torchvision's stages 1-3 and the stem, i.e. all its names but norm5, denseblock4, transition3, classifier.
  size_t expected = 0;
  for (const auto& [name, shape] : shapes)
    if (!name.starts_with("features.norm5") && !name.starts_with("features.denseblock4") &&
        !name.starts_with("features.transition3") && !name.starts_with("classifier"))
      ++expected;
  EXPECT_EQ(loaded[0].tensors.size(), expected);
}

}  // namespace
}  // namespace facet::models::test_a3d
