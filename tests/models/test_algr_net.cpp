// ALGRNet: output shapes, the parameter count of the documented configuration, the palsy head,
// ablation switches, adaptive regions (start at JAA-Net's, bounded, differentiable), weight loading,
// option errors, and overfitting one batch of drawn faces.
#include "core/config.h"
#include "core/safetensors.h"
#include "models/backbones/resnet.h"
#include "models/face/algr_net.h"
#include "models/face/au_regions.h"
#include "models/weights/init_weights.h"
#include "tests/models/face_batch.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace facet::models::face::test_algr_net {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using test_support::message_of;

// Reduced for CPU test time (ResNet-18 trunk, dim 64); the architecture is the same.
ALGRNetOptions small_options() {
  ALGRNetOptions o;
  o.backbone_depth = 18;
  o.dim = 64;
  return o;
}

// The parameters each module adds at dim d with n AUs (algr_net.h), for the ablation deltas.
int64_t adaptive_params(int64_t d, int64_t n) { return (2 * d * (d / 2) + d / 2) + 2 * n * (d / 2) + (d / 2 * 3 + 3); }
int64_t bilstm_params(int64_t d, int64_t layers) {
  const int64_t h = d / 2;
  // Per direction: W_ih [4h, d], W_hh [4h, h], b_ih and b_hh [4h]; then LayerNorm(d).
  return layers * (2 * (4 * h * d + 4 * h * h + 2 * 4 * h) + 2 * d);
}
int64_t fusion_params(int64_t d) { return (d * d + d) + (2 * d * d + d) + (d * 2 * d + 2 * d) + (2 * d * d + d) + 2 * d; }
int64_t palsy_params(int64_t d, int64_t grades) {
  return (d * d + d) + (d * (d / 2) + d / 2) + (d / 2 + 1) + (2 * d * d + d) + (d * grades + grades);
}

TEST(ALGRNet, ShapesAndParameterCountOfTheDocumentedConfiguration) {
  ALGRNet net(ALGRNetOptions{});
  // Reconstructed configuration (algr_net.h), BP4D's 12 AUs, dim 256:
  //   ResNet-50 through layer3           8,543,296 (torchvision's 25,557,032 - layer4 14,964,736 - fc 2,049,000)
  //   1x1 reduction 1024 -> 256 + BN       262,656
  //   adaptive regions                      69,123 (Linear 512->128, 24 region embeddings of 128, Linear 128->3)
  //   12 AU branches (512 -> 256 each)   1,575,936
  //   skip-BiLSTM, 2 layers                791,552 (2 x [2 directions x 197,632 + LayerNorm 512])
  //   fusion & refining                    460,544 (global 65,792 + gate 131,328 + MLP 262,912 + LayerNorm 512)
  //   12 AU classifiers                      3,084
  EXPECT_EQ(adaptive_params(256, 12), 69123);
  EXPECT_EQ(bilstm_params(256, 2), 791552);
  EXPECT_EQ(fusion_params(256), 460544);
  EXPECT_EQ(testing::parameter_count(net), 8543296 + 262656 + 69123 + 1575936 + 791552 + 460544 + 3084);
  EXPECT_EQ(testing::parameter_count(net), 11706191);
  net.eval();
  torch::NoGradGuard no_grad;
  const data::Batch b = testing::drawn_face_batch(2, 176);
  const TensorDict out = net.forward(b);
  EXPECT_EQ(out.at("logits").sizes(), (std::vector<int64_t>{2, 12}));
  EXPECT_EQ(out.at("region_centres").sizes(), (std::vector<int64_t>{2, 24, 2}));
  EXPECT_EQ(out.at("region_sides").sizes(), (std::vector<int64_t>{2, 24}));
  EXPECT_FALSE(out.contains("palsy_logits"));
  EXPECT_TRUE(torch::isfinite(out.at("logits")).all().item<bool>());
}

TEST(ALGRNet, PalsyHeadAddsItsParametersAndGradeLogits) {
  // With a 6-grade head (House-Brackmann I..VI): + asymmetry projection 65,792 + attention 33,025
  // + MLP 131,328 + 1,542 = 231,687.
  ALGRNetOptions o;
  o.palsy_grades = 6;
  ALGRNet net(o);
  EXPECT_EQ(palsy_params(256, 6), 231687);
  EXPECT_EQ(testing::parameter_count(net), 11706191 + 231687);
  net.eval();
  torch::NoGradGuard no_grad;
  const TensorDict out = net.forward(testing::drawn_face_batch(3, 176));
  EXPECT_EQ(out.at("palsy_logits").sizes(), (std::vector<int64_t>{3, 6}));
  ASSERT_EQ(out.at("palsy_attention").sizes(), (std::vector<int64_t>{3, 12}));
  EXPECT_TRUE(torch::allclose(out.at("palsy_attention").sum(1), torch::ones({3})));
}

TEST(ALGRNet, AblationsRemoveExactlyTheirModuleAndStillRun) {
  const data::Batch b = testing::drawn_face_batch(2, 96);
  ALGRNetOptions disfa = small_options();
  disfa.aus = {1, 2, 4, 6, 9, 12, 25, 26};  // DISFA's 8
  ALGRNet full(disfa);
  const int64_t all = testing::parameter_count(full);
  struct Case {
    bool ALGRNetOptions::*flag;
    int64_t removed;
  };
  for (const Case& c : {Case{&ALGRNetOptions::adaptive_regions, adaptive_params(64, 8)},
                        Case{&ALGRNetOptions::skip_bilstm, bilstm_params(64, 2)}, Case{&ALGRNetOptions::fusion, fusion_params(64)}}) {
    ALGRNetOptions ablated = disfa;
    ablated.*c.flag = false;
    ALGRNet a(ablated);
    EXPECT_EQ(testing::parameter_count(a), all - c.removed);
    a.eval();
    torch::NoGradGuard no_grad;
    const TensorDict out = a.forward(b);
    EXPECT_EQ(out.at("logits").sizes(), (std::vector<int64_t>{2, 8}));
    EXPECT_TRUE(torch::isfinite(out.at("logits")).all().item<bool>());
  }
  // Every module off: trunk, reduction, branches and classifiers remain.
  ALGRNetOptions bare = disfa;
  bare.adaptive_regions = bare.skip_bilstm = bare.fusion = false;
  EXPECT_EQ(testing::parameter_count(ALGRNet(bare)),
            all - adaptive_params(64, 8) - bilstm_params(64, 2) - fusion_params(64));
}

TEST(ALGRNet, DisfasSixtySixLandmarksGiveTheSameOutputsAsSixtyEight) {
  // DISFA ships 66 points (68 without the inner-mouth corners 60 and 64, 0-based): the AU centres,
  // hence every output, are the same.
  ALGRNetOptions o = small_options();
  o.aus = {1, 2, 4, 6, 9, 12, 25, 26};
  o.palsy_grades = 3;
  ALGRNet net(o);
  net.eval();
  torch::NoGradGuard no_grad;
  const data::Batch b68 = testing::drawn_face_batch(2, 96);
  data::Batch b66 = b68;
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < 68; ++i)
    if (i != 60 && i != 64) keep.push_back(i);
  b66.fields["landmarks"] = b68.fields.at("landmarks").index_select(1, torch::tensor(keep));
  const TensorDict a = net.forward(b68), c = net.forward(b66);
  for (const char* name : {"logits", "region_centres", "palsy_logits"}) EXPECT_TRUE(torch::allclose(a.at(name), c.at(name))) << name;
}

TEST(ALGRNet, AdaptiveRegionsStartAtJaaNetsAndMoveWithinTheirBounds) {
  torch::manual_seed(0);
  ALGRNetOptions o = small_options();
  ALGRNet net(o);
  net.eval();
  const data::Batch b = testing::drawn_face_batch(2, 96);
  const torch::Tensor jaa = au_centres(b.fields.at("landmarks"), o.aus).view({2, 24, 2});
  {
    torch::NoGradGuard no_grad;
    const TensorDict out = net.forward(b);
    // The adaptation's last layer starts at zero: exactly the landmark regions, side 0.25 x 96.
    EXPECT_TRUE(torch::allclose(out.at("region_centres"), jaa));
    EXPECT_TRUE(torch::allclose(out.at("region_sides"), torch::full({2, 24}, 24.f)));
  }
  // Gradients reach the adaptation through the bilinear sampling of the shifted, rescaled squares.
  net.forward(b).at("logits").sum().backward();
  torch::Tensor adapt_out_weight;
  for (const auto& p : net.named_parameters())
    if (p.key() == "adapt_out.weight") adapt_out_weight = p.value();
  ASSERT_TRUE(adapt_out_weight.defined());
  ASSERT_TRUE(adapt_out_weight.grad().defined());
  EXPECT_GT(adapt_out_weight.grad().abs().sum().item<double>(), 0);
  // Driven to saturation, shifts stay within 0.1 x 96 px and sides within [12, 48] px.
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : net.named_parameters())
      if (p.key() == "adapt_out.bias") p.value().copy_(torch::tensor({50.f, -50.f, 50.f}));
    const TensorDict out = net.forward(b);
    const torch::Tensor shift = out.at("region_centres") - jaa;
    EXPECT_TRUE(torch::allclose(shift.select(-1, 0), torch::full({2, 24}, 9.6f), 1e-3, 1e-3));
    EXPECT_TRUE(torch::allclose(shift.select(-1, 1), torch::full({2, 24}, -9.6f), 1e-3, 1e-3));
    EXPECT_TRUE(torch::allclose(out.at("region_sides"), torch::full({2, 24}, 48.f), 1e-3, 1e-3));
  }
  // Without the module the regions are JAA-Net's whatever the input.
  o.adaptive_regions = false;
  ALGRNet fixed(o);
  fixed.eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(fixed.forward(b).at("region_centres"), jaa));
}

// Through train.init_weights (the constructor reads no file): an ImageNet trunk, then the palsy
// migration from an AU model.
TEST(ALGRNet, LoadsTorchvisionTrunksAndCheckpointsOfOtherTasks) {
  const fs::path dir = fs::temp_directory_path() / ("facet_algr_weights_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto load = [](torch::nn::Module& model, const std::string& entries) { init_weights(model, Config::parse("init_weights: " + entries, "algr.yaml").at("init_weights")); };
  // A whole torchvision ResNet-18 (layer4 and fc included): the converter finds the trunk under
  // backbone. and leaves out layer4 and fc, which the stride-16 trunk does not have.
  torch::manual_seed(1);
  ResNetOptions r18;
  r18.depth = 18;
  ResNet tv(r18);
  safetensors::save(dir / "resnet18.safetensors", safetensors::state_dict(*tv));
  ALGRNet loaded(small_options());
  load(loaded, fmt::format("[{{path: {}, convert: torchvision_resnet}}]", (dir / "resnet18.safetensors").string()));
  const auto state = safetensors::state_dict(loaded);
  EXPECT_TRUE(torch::equal(state.at("backbone.conv1.weight"), tv->conv1->weight));
  EXPECT_TRUE(torch::equal(state.at("backbone.layer3.1.conv2.weight"), safetensors::state_dict(*tv).at("layer3.1.conv2.weight")));

  // An AU model's checkpoint initialises a palsy model: everything but the new head (strict: false).
  safetensors::save(dir / "au.safetensors", state);
  ALGRNetOptions palsy = small_options();
  palsy.palsy_grades = 4;
  ALGRNet transferred(palsy);
  load(transferred, fmt::format("[{{path: {}, strict: false}}]", (dir / "au.safetensors").string()));
  const auto moved = safetensors::state_dict(transferred);
  for (const auto& [name, t] : state) EXPECT_TRUE(torch::equal(moved.at(name), t)) << name;
  EXPECT_TRUE(moved.contains("palsy2.weight"));
  // Strict, the palsy head the file lacks is named.
  EXPECT_THAT(message_of([&] { load(transferred, fmt::format("[{{path: {}}}]", (dir / "au.safetensors").string())); }),
              HasSubstr("model tensors the file lacks: 10 tensors: asym_proj.* (2), attn1.* (2)"));
  // A checkpoint of another width is refused, naming the file and a tensor with both shapes.
  ALGRNetOptions wide = small_options();
  wide.dim = 32;
  ALGRNet narrow(wide);
  const std::string error = message_of([&] { load(narrow, fmt::format("[{{path: {}, strict: false}}]", (dir / "au.safetensors").string())); });
  EXPECT_THAT(error, HasSubstr("algr.yaml:1: init_weights[0]: " + (dir / "au.safetensors").string()));
  EXPECT_THAT(error, HasSubstr("of another shape"));
  EXPECT_THAT(error, HasSubstr("adapt_hidden.weight: the model expects [16, 64], the file's adapt_hidden.weight is [32, 128]"));
  fs::remove_all(dir);
}

TEST(ALGRNet, OptionErrorsNameTheKey) {
  auto build = [](const std::string& yaml) {
    return message_of([&] { model_registry().create(Config::parse(yaml, "m.yaml")); });
  };
  EXPECT_THAT(build("{name: algr_net, dim: 7}"), HasSubstr("dim: expected a positive even number, got 7"));
  EXPECT_THAT(build("{name: algr_net, palsy_grades: 1}"), HasSubstr("palsy_grades: expected 0 (no palsy head) or at least 2 grades, got 1"));
  EXPECT_THAT(build("{name: algr_net, max_shift: 0.7}"), HasSubstr("max_shift: expected a fraction of the image side in [0, 0.5], got 0.7"));
  EXPECT_THAT(build("{name: algr_net, backbone_depth: 19}"), HasSubstr("backbone_depth: expected 18, 34, 50 or 101, got 19"));
  // An AU without a JAA-Net region rule fails at the first forward, naming it.
  ALGRNetOptions o = small_options();
  o.aus = {1, 5};
  ALGRNet net(o);
  EXPECT_THAT(message_of([&] { net.forward(testing::drawn_face_batch(1, 64)); }), HasSubstr("no JAA-Net region rule for AU5"));
  data::Batch b = testing::drawn_face_batch(1, 64);
  b.fields.erase("landmarks");
  EXPECT_THAT(message_of([&] { ALGRNet(small_options()).forward(b); }), HasSubstr("algr_net needs facial landmarks"));
}

TEST(ALGRNet, OverfitsOneBatchOfDrawnFacesForAusAndPalsyGrades) {
  // Reduced for CPU test time (ResNet-18 trunk, dim 64, 96 px); the architecture is the same.
  torch::manual_seed(0);
  ALGRNetOptions o = small_options();
  o.dropout = 0;
  o.palsy_grades = 3;
  ALGRNet net(o);
  const data::Batch b = testing::drawn_face_batch(8, 96, 3);
  const torch::Tensor grades = torch::arange(8, torch::kInt64) % 3;
  torch::optim::Adam adam(net.parameters(), torch::optim::AdamOptions(1e-3));
  float first_bce = 0, bce = 0, first_ce = 0, ce = 0;
  for (int step = 0; step < 60; ++step) {
    adam.zero_grad();
    const TensorDict out = net.forward(b);
    const auto au = torch::binary_cross_entropy_with_logits(out.at("logits"), b.fields.at("labels"));
    const auto grade = torch::cross_entropy_loss(out.at("palsy_logits"), grades);
    (au + grade).backward();
    adam.step();
    if (step == 0) first_bce = au.item<float>(), first_ce = grade.item<float>();
    bce = au.item<float>();
    ce = grade.item<float>();
  }
  std::printf("ALGRNet overfit: AU BCE %.4f -> %.4f, palsy CE %.4f -> %.4f in 60 steps\n", first_bce, bce, first_ce, ce);
  EXPECT_LT(bce, 0.05);
  EXPECT_LT(bce, first_bce / 10);
  EXPECT_LT(ce, 0.05);
  EXPECT_LT(ce, first_ce / 10);
}

}  // namespace
}  // namespace facet::models::face::test_algr_net
