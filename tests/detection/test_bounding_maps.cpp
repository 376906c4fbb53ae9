// Bounding maps (models/detection/bounding_maps.h) on hand-computed boxes, following the reference's
// arithmetic (BMMVP tools/mask2bbox.py, medical.md §4.2): np.round half to even, ridges 1 - k t.
#include "core/error.h"
#include "models/detection/bounding_maps.h"

#include <gtest/gtest.h>

#include <cmath>

namespace facet::models::detection::test_bounding_maps {
namespace {

torch::Tensor box(std::initializer_list<float> v) { return torch::tensor(std::vector<float>(v)).view({-1, 4}); }
float at(const torch::Tensor& m, int64_t r, int64_t c) { return m[r][c].item<float>(); }

TEST(BoundingMaps, OnePixelBoxRoundsItsCentresApartSoTheXyMapIsEmpty) {
  // x: dx = 0.5, cx = round(2.5) = 2, no ridge; rows [3, 4). y: cy = round(3.5) = 4 (half to even).
  const auto m = bounding_maps(box({2, 3, 3, 4}), 8, 8);
  EXPECT_FLOAT_EQ(m.x.sum().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(at(m.x, 3, 2), 1.0f);
  EXPECT_FLOAT_EQ(m.y.sum().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(at(m.y, 4, 2), 1.0f);
  EXPECT_FLOAT_EQ(m.xy.sum().item<float>(), 0.0f);
}

TEST(BoundingMaps, TwoPixelBox) {
  // dx = dy = 1: centre 3, one ridge step of k = 0.5 on each side; rows / columns [2, 4).
  const auto m = bounding_maps(box({2, 2, 4, 4}), 8, 8);
  auto expect_x = torch::zeros({8, 8});
  for (int r : {2, 3}) {
    expect_x[r][2] = 0.5;
    expect_x[r][3] = 1.0;
    expect_x[r][4] = 0.5;
  }
  EXPECT_TRUE(torch::equal(m.x, expect_x));
  EXPECT_TRUE(torch::equal(m.y, expect_x.t()));
  EXPECT_FLOAT_EQ(at(m.xy, 2, 2), 0.5f);
  EXPECT_NEAR(at(m.xy, 2, 3), std::sqrt(0.5), 1e-6);
  EXPECT_NEAR(at(m.xy, 3, 2), std::sqrt(0.5), 1e-6);
  EXPECT_FLOAT_EQ(at(m.xy, 3, 3), 1.0f);
  EXPECT_FLOAT_EQ(m.xy.slice(0, 4, 8).sum().item<float>(), 0.0f);  // row 4: BM_y 0.5 but BM_x 0
  EXPECT_FLOAT_EQ(at(m.xy, 3, 4), 0.0f);
}

TEST(BoundingMaps, RidgeOfAWideBoxAtTheTopLeftBorder) {
  // (0, 0, 6, 4): dx = 3, cx = 3, k = 1/6, columns 0..6; dy = 2, cy = 2, k = 1/4, rows 0..4.
  const auto m = bounding_maps(box({0, 0, 6, 4}), 8, 8);
  const float cols[7] = {0.5f, 4 / 6.f, 5 / 6.f, 1.f, 5 / 6.f, 4 / 6.f, 0.5f};
  for (int c = 0; c < 7; ++c) {
    EXPECT_NEAR(at(m.x, 0, c), cols[c], 1e-6) << c;
    EXPECT_NEAR(at(m.x, 3, c), cols[c], 1e-6) << c;
    EXPECT_FLOAT_EQ(at(m.x, 4, c), 0.0f) << c;  // rows [0, 4)
  }
  const float rows[5] = {0.5f, 0.75f, 1.f, 0.75f, 0.5f};
  for (int r = 0; r < 5; ++r) {
    EXPECT_NEAR(at(m.y, r, 0), rows[r], 1e-6) << r;
    EXPECT_NEAR(at(m.y, r, 5), rows[r], 1e-6) << r;
    EXPECT_FLOAT_EQ(at(m.y, r, 6), 0.0f) << r;  // columns [0, 6)
  }
  EXPECT_NEAR(at(m.xy, 1, 1), std::sqrt((4 / 6.) * 0.75), 1e-6);
}

TEST(BoundingMaps, BorderPixelsOutsideTheCanvasAreDroppedNotWrapped) {
  // Offset 1 (the SATr copy): (0, 0, 3, 3) -> (-1, -1, 2, 2): dx = 1.5, cx = round(0.5) = 0, two ridge
  // steps of 1/3: columns -2, -1 (dropped; Python would wrap them to 6, 7), 0, 1, 2.
  BoundingMapOptions o;
  o.offset = 1;
  const auto left = bounding_maps(box({0, 0, 3, 3}), 8, 8, o);
  EXPECT_FLOAT_EQ(at(left.x, 0, 0), 1.0f);
  EXPECT_NEAR(at(left.x, 0, 1), 2 / 3.f, 1e-6);
  EXPECT_NEAR(at(left.x, 1, 2), 1 / 3.f, 1e-6);
  EXPECT_FLOAT_EQ(left.x.slice(1, 3, 8).sum().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(left.x.slice(0, 2, 8).sum().item<float>(), 0.0f);  // rows [round(-1), 2) clipped to [0, 2)
  // Right edge: (5, 5, 8, 8): cx = round(6.5) = 6, columns 4..8, column 8 off the canvas.
  const auto right = bounding_maps(box({5, 5, 8, 8}), 8, 8);
  EXPECT_NEAR(at(right.x, 7, 4), 1 / 3.f, 1e-6);
  EXPECT_NEAR(at(right.x, 7, 5), 2 / 3.f, 1e-6);
  EXPECT_FLOAT_EQ(at(right.x, 7, 6), 1.0f);
  EXPECT_NEAR(at(right.x, 7, 7), 2 / 3.f, 1e-6);
  EXPECT_NEAR(at(right.y, 4, 7), 1 / 3.f, 1e-6);
}

TEST(BoundingMaps, OverlappingBoxesAreSummedThenClipped) {
  const auto a = box({0, 0, 4, 4}), b = box({2, 0, 6, 4});
  const auto both = bounding_maps(torch::cat({a, b}), 8, 8), ma = bounding_maps(a, 8, 8), mb = bounding_maps(b, 8, 8);
  // Column 3: 0.75 (a, centre 2) + 0.75 (b, centre 4) = 1.5 -> 1; column 1: a alone.
  EXPECT_FLOAT_EQ(at(both.x, 0, 3), 1.0f);
  EXPECT_FLOAT_EQ(at(both.x, 0, 1), 0.75f);
  EXPECT_TRUE(torch::allclose(both.x, (ma.x + mb.x).clamp_max(1)));
  EXPECT_TRUE(torch::allclose(both.xy, (ma.xy + mb.xy).clamp_max(1)));
  EXPECT_LE(both.xy.max().item<float>(), 1.0f);
  EXPECT_GT((ma.xy + mb.xy).max().item<float>(), 1.0f);  // the clip mattered
  EXPECT_FLOAT_EQ(bounding_maps(torch::zeros({0, 4}), 4, 4).xy.sum().item<float>(), 0.0f);
}

TEST(BoundingMaps, SizeAdaptiveMapIsFlatForSmallBoxes) {
  BoundingMapOptions o;
  o.size_adaptive = true;
  // 10 x 10 box: dx dy = 25 < 50 -> slope 0: 1 on rows [10, 20) and columns cx +- 5 = 10..20.
  const auto small = bounding_maps(box({10, 10, 20, 20}), 32, 32, o);
  EXPECT_FLOAT_EQ(small.x.slice(0, 10, 20).slice(1, 10, 21).min().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(small.x.sum().item<float>(), 10 * 11);
  EXPECT_FLOAT_EQ(small.xy.sum().item<float>(), 100);
  // 20 x 20 box: dx dy = 100 -> the usual 0.5 / dx slope.
  const auto big = bounding_maps(box({0, 0, 20, 20}), 32, 32, o), plain = bounding_maps(box({0, 0, 20, 20}), 32, 32);
  EXPECT_TRUE(torch::equal(big.xy, plain.xy));
  EXPECT_NEAR(at(big.x, 5, 15), 1 - 0.05 * 5, 1e-6);
}

TEST(BoundingMaps, CenterPlateauOption) {
  BoundingMapOptions o;
  o.center_plateau = true;
  // Large box (0, 0, 20, 20), centre 10: plateau of 1 on rows / columns [2, 16) (c - 8 .. c + 5).
  const auto m = bounding_maps(box({0, 0, 20, 20}), 32, 32, o);
  EXPECT_FLOAT_EQ(m.xy.slice(0, 2, 16).slice(1, 2, 16).min().item<float>(), 1.0f);
  EXPECT_LT(at(m.xy, 16, 10), 1.0f);
  EXPECT_LT(at(m.xy, 1, 10), 1.0f);
  // Small box: exactly 1 on the rounded box, not past it.
  const auto s = bounding_maps(box({10, 10, 20, 20}), 32, 32, o);
  EXPECT_FLOAT_EQ(s.xy.sum().item<float>(), 100);
  EXPECT_FLOAT_EQ(s.x.slice(1, 20, 21).sum().item<float>(), 0.0f);
}

TEST(AnchorMapTargets, NearestSamplingPerChannelAndSizeAwareChannels) {
  auto map = torch::zeros({8, 8});
  map[0][4] = 0.25;
  map[4][4] = 0.75;
  map[5][5] = 9;  // not a sampled pixel
  const auto g = box({0, 0, 20, 15});  // area 300
  const auto t = anchor_map_targets(map, {{2, 2}}, 2, g);
  EXPECT_TRUE(torch::equal(t, torch::tensor({0.f, 0.f, 0.25f, 0.25f, 0.f, 0.f, 0.75f, 0.75f})));
  // Two scales (areas 256, 576), one ratio: 300 px² -> the second channel; the other gets 0.5 x.
  SizeAwareChannels s{{256, 576}, 1, 0.5};
  const auto u = anchor_map_targets(map, {{2, 2}}, 2, g, s);
  EXPECT_TRUE(torch::equal(u, torch::tensor({0.f, 0.f, 0.125f, 0.25f, 0.f, 0.f, 0.375f, 0.75f})));
  EXPECT_THROW(anchor_map_targets(map, {{2, 2}}, 3, g, s), Error);
}

}  // namespace
}  // namespace facet::models::detection::test_bounding_maps
