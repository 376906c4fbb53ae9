// Registers the detector tests' tiny backbone (tiny_backbone.h).
#include "tests/detection/tiny_backbone.h"

#include <gtest/gtest.h>

namespace facet::models::detection::test_tiny_backbone {
namespace {

FACET_REGISTER(backbone_registry(), "test_tiny_stride4", "Test: three convs to one stride-4 map (in_channels, channels)",
               [](const Config& c) {
                 return std::make_shared<TinyBackbone>(c.get<int64_t>("in_channels", 1), c.get<int64_t>("channels", 32));
               });

TEST(TinyBackbone, OneStride4Map) {
  TinyBackbone b(3);
  EXPECT_EQ(b.forward_features(torch::zeros({1, 3, 32, 40})).at("c4").sizes(), torch::IntArrayRef({1, 32, 8, 10}));
}

}  // namespace
}  // namespace facet::models::detection::test_tiny_backbone
