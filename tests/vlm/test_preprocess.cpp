// CLIP preprocessing against transformers' CLIPImageProcessor (tools/golden/vlm_golden.py: size 32,
// crop 32, three images of different shapes and a grey one; plain and after LLaVA's expand2square).
#include "core/error.h"
#include "core/safetensors.h"
#include "models/vlm/clip_preprocess.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::test_preprocess {

using namespace facet::models::vlm;

namespace {

TEST(ClipPreprocess, MatchesCLIPImageProcessor) {
  safetensors::File golden(std::filesystem::path(facet::test_support::kSourceDir) / "tests/fixtures/vlm/preprocess.safetensors");
  ClipPreprocessOptions o;
  o.size = 32;
  o.crop_size = 32;
  for (int i = 0; i < 3; ++i) {
    const auto image = golden.tensor("image" + std::to_string(i));
    for (bool pad : {false, true}) {
      o.pad_to_square = pad;
      const auto ours = clip_preprocess(image, o);
      const auto theirs = golden.tensor((pad ? "pad" : "plain") + std::to_string(i));
      ASSERT_EQ(ours.sizes(), theirs.sizes());
      // Same 8-bit resampling kernel: float rounding only (one 8-bit level would be 0.015).
      const double err = (ours - theirs).abs().max().item<double>();
      EXPECT_LT(err, 1e-5) << "image " << i << (pad ? " padded" : " plain") << ": max |diff| " << err;
      ::testing::Test::RecordProperty("preprocess image" + std::to_string(i) + (pad ? " pad" : " plain"), std::to_string(err));
    }
  }
}

TEST(ClipPreprocess, ShapesAndErrors) {
  ClipPreprocessOptions o;
  o.size = 16;
  o.crop_size = 16;
  o.square_resize = true;
  EXPECT_EQ(clip_preprocess(torch::rand({1, 40, 20}), o).sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_THAT([&] { clip_preprocess(torch::zeros({4, 5, 6, 7}, torch::kByte), o); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("a uint8 image must be [H, W] or [H, W, 1|3]")));
}

}  // namespace

}  // namespace facet::test_preprocess
