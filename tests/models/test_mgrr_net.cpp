// MGRR-Net: output shapes, the parameter count of the documented configuration, ablation switches,
// AU regions from landmarks, and overfitting one batch of drawn faces.
#include "models/face/au_regions.h"
#include "models/face/mgrr_net.h"
#include "tests/models/face_batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::models::face::test_mgrr_net {
namespace {

using ::testing::HasSubstr;

TEST(AuRegions, CentresFollowJaaNetRulesForEveryScheme) {
  // A 68-point face whose 49-point subset is 0..48 along x (x = index), y = 100, inner eye corners
  // (49-point 22 and 25) 3 apart, so the ruler is 3.
  torch::Tensor p68 = torch::zeros({1, 68, 2});
  std::vector<int64_t> to68;
  for (int64_t i = 0; i < 43; ++i) to68.push_back(i + 17);
  for (int64_t i : {61, 62, 63, 65, 66, 67}) to68.push_back(i);
  for (int64_t i = 0; i < 49; ++i) p68[0][to68[static_cast<size_t>(i)]] = torch::tensor({static_cast<float>(i), 100.f});
  const torch::Tensor c = au_centres(p68, {1, 6, 23});
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{1, 3, 2, 2}));
  // AU1: points 4 and 5, up half a ruler; AU6: 24 and 29, down one ruler; AU23: 34 and 40, level.
  EXPECT_TRUE(torch::allclose(c[0][0], torch::tensor({{4.f, 98.5f}, {5.f, 98.5f}})));
  EXPECT_TRUE(torch::allclose(c[0][1], torch::tensor({{24.f, 103.f}, {29.f, 103.f}})));
  EXPECT_TRUE(torch::allclose(c[0][2], torch::tensor({{34.f, 100.f}, {40.f, 100.f}})));
  // The 49- and 66-point versions of the same face give the same centres.
  EXPECT_TRUE(torch::allclose(au_centres(p68.index_select(1, torch::tensor(to68)), {1, 6, 23}), c));
  std::vector<int64_t> to66;
  for (int64_t i = 0; i < 68; ++i)
    if (i != 60 && i != 64) to66.push_back(i);
  EXPECT_TRUE(torch::allclose(au_centres(p68.index_select(1, torch::tensor(to66)), {1, 6, 23}), c));
  try {
    au_centres(p68, {5});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no JAA-Net region rule for AU5"));
  }
}

TEST(AuRegions, SamplingAveragesTheSquareAroundEachCentre) {
  // A map whose value is the x pixel coordinate of each cell centre (stride 1): the mean over a
  // square centred at x is x.
  const torch::Tensor map = (torch::arange(16, torch::kFloat) + 0.5).view({1, 1, 1, 16}).expand({1, 1, 16, 16}).contiguous();
  const torch::Tensor centres = torch::tensor({{{5.5f, 8.f}, {10.f, 3.f}}});
  const torch::Tensor v = sample_regions(map, centres, torch::tensor(4.f), {16, 16});
  ASSERT_EQ(v.sizes(), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_NEAR(v[0][0][0].item<float>(), 5.5, 1e-4);
  EXPECT_NEAR(v[0][1][0].item<float>(), 10, 1e-4);
}

TEST(MGRRNet, ShapesAndParameterCountOfTheDocumentedConfiguration) {
  MGRRNet net(MGRRNetOptions{});
  // Reconstructed configuration (mgrr_net.h): ResNet-50 through layer3 8,543,296 (torchvision's
  // 25,557,032 minus layer4 14,964,736 and fc 2,049,000) + 1x1 reduction to 256 with BN 262,656
  // + 2 MGRR layers of 542,930 + 12 AU classifiers 3,084.
  EXPECT_EQ(testing::parameter_count(net), 8543296 + 262656 + 2 * 542930 + 3084);
  net.eval();
  torch::NoGradGuard no_grad;
  const data::Batch b = testing::drawn_face_batch(2, 176);
  EXPECT_EQ(net.forward(b).at("logits").sizes(), (std::vector<int64_t>{2, 12}));
  // DISFA's 8 AUs; ablations remove their level's parameters.
  MGRRNetOptions disfa;
  disfa.aus = {1, 2, 4, 6, 9, 12, 25, 26};
  disfa.backbone_depth = 18;
  disfa.dim = 64;
  MGRRNet small(disfa);
  small.eval();
  EXPECT_EQ(small.forward(b).at("logits").sizes(), (std::vector<int64_t>{2, 8}));
  for (auto flag : {&MGRRNetOptions::region_level, &MGRRNetOptions::pixel_level, &MGRRNetOptions::channel_level}) {
    MGRRNetOptions ablated = disfa;
    ablated.*flag = false;
    MGRRNet a(ablated);
    a.eval();
    EXPECT_LT(testing::parameter_count(a), testing::parameter_count(small));
    EXPECT_EQ(a.forward(b).at("logits").sizes(), (std::vector<int64_t>{2, 8}));
  }
}

TEST(MGRRNet, NeedsLandmarks) {
  MGRRNetOptions o;
  o.backbone_depth = 18;
  o.dim = 32;
  MGRRNet net(o);
  data::Batch b = testing::drawn_face_batch(1, 64);
  b.fields.erase("landmarks");
  try {
    net.forward(b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("mgrr_net needs facial landmarks"));
  }
}

TEST(MGRRNet, OverfitsOneBatchOfDrawnFaces) {
  // Reduced for CPU test time (ResNet-18 trunk, dim 64, 96 px); the architecture is the same.
  torch::manual_seed(0);
  MGRRNetOptions o;
  o.backbone_depth = 18;
  o.dim = 64;
  o.dropout = 0;
  MGRRNet net(o);
  const data::Batch b = testing::drawn_face_batch(8, 96, 3);
  torch::optim::Adam adam(net.parameters(), torch::optim::AdamOptions(1e-3));
  float first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    adam.zero_grad();
    const auto loss = torch::binary_cross_entropy_with_logits(net.forward(b).at("logits"), b.fields.at("labels"));
    loss.backward();
    adam.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  std::printf("MGRR-Net overfit: BCE %.4f -> %.4f in 60 steps\n", first, last);
  EXPECT_LT(last, 0.05);
  EXPECT_LT(last, first / 10);
}

}  // namespace
}  // namespace facet::models::face::test_mgrr_net
