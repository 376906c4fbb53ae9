// The loader's antialiased resize of 8-bit pixels against torch's interpolate(bilinear,
// antialias=True) on uint8, which it must equal to the bit: every kernel (AVX-512 VBMI where the CPU
// has it, AVX2, portable), shrinking
// and enlarging, one axis or both, 1 to 5 channels, strided rows, windows of the output; the weight
// table by hand.
#include "core/error.h"
#include "data/image/resample.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace facet::data::test_resample {
namespace {

using image::ResampleKernels;

// torch's result for uint8 HWC pixels, channels-last as torchvision resizes a decoded image.
torch::Tensor torch_resize(const torch::Tensor& hwc, int64_t rows, int64_t cols) {
  namespace F = torch::nn::functional;
  const torch::Tensor resized = F::interpolate(hwc.permute({2, 0, 1}).unsqueeze(0),
                                               F::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{rows, cols})
                                                   .mode(torch::kBilinear)
                                                   .align_corners(false)
                                                   .antialias(true));
  return resized[0].permute({1, 2, 0}).contiguous();
}

torch::Tensor ours(const torch::Tensor& hwc, int64_t rows, int64_t cols, ResampleKernels kernels) {
  EXPECT_EQ(hwc.stride(2), 1);
  EXPECT_EQ(hwc.stride(1), hwc.size(2));
  const image::PixelsView in{hwc.data_ptr<uint8_t>(), hwc.size(0), hwc.size(1), hwc.size(2), hwc.stride(0)};
  torch::Tensor out = torch::empty({rows, cols, hwc.size(2)}, torch::kUInt8);
  image::resize_antialiased(in, out.data_ptr<uint8_t>(), rows, cols, kernels);
  return out;
}

const char* kernel_name(ResampleKernels kernels) {
  return kernels == ResampleKernels::best ? "best" : kernels == ResampleKernels::avx2 ? "avx2" : "portable";
}

// Noise: every pixel's rounding is independent, so one wrong weight or shift shows.
torch::Tensor noise(int64_t rows, int64_t cols, int64_t channels, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(0, 256, {rows, cols, channels}, g, torch::kUInt8);
}

TEST(Resample, EqualsTorchsAntialiasedBilinearToTheBit) {
  struct Case {
    int64_t rows, cols, out_rows, out_cols;
  };
  const std::vector<Case> cases = {
      {256, 256, 200, 200},  // the face loader's frames
      {260, 348, 200, 200},  // a BP4D frame decoded at 1/4
      {517, 389, 200, 176},  // odd factors, more taps than one 16-byte load holds
      {100, 37, 200, 75},    // enlarging
      {64, 64, 64, 31},      // horizontal only
      {64, 64, 17, 64},      // vertical only
      {9, 5, 4, 11},         // rows too short for the vector kernels
  };
  uint64_t seed = 0;
  for (const Case& c : cases)
    for (const int64_t channels : {1, 3, 4, 5}) {
      const torch::Tensor in = noise(c.rows, c.cols, channels, ++seed);
      const torch::Tensor expected = torch_resize(in, c.out_rows, c.out_cols);
      for (const auto kernels : {ResampleKernels::best, ResampleKernels::avx2, ResampleKernels::portable}) {
        const torch::Tensor got = ours(in, c.out_rows, c.out_cols, kernels);
        EXPECT_TRUE(torch::equal(got, expected))
            << c.rows << "x" << c.cols << "x" << channels << " -> " << c.out_rows << "x" << c.out_cols << " ("
            << kernel_name(kernels) << "): "
            << (got.to(torch::kInt) - expected.to(torch::kInt)).abs().max().item<int>() << " grey levels off";
      }
    }
}

TEST(Resample, ReadsRowsWithAStrideLongerThanTheRow) {
  const torch::Tensor frame = noise(300, 300, 3, 7);
  const torch::Tensor crop = frame.slice(0, 10, 266).slice(1, 20, 276);  // 256 x 256, rows 900 bytes apart
  torch::Tensor out = torch::empty({200, 200, 3}, torch::kUInt8);
  image::resize_antialiased({crop.data_ptr<uint8_t>(), 256, 256, 3, crop.stride(0)}, out.data_ptr<uint8_t>(), 200, 200);
  EXPECT_TRUE(torch::equal(out, torch_resize(crop, 200, 200)));
}

// A window of the output is that part of the whole resize to the bit, and nothing else is written.
TEST(Resample, AWindowIsThatPartOfTheWholeResize) {
  struct Case {
    int64_t rows, cols, out_rows, out_cols;
    image::OutputWindow window;
  };
  const std::vector<Case> cases = {
      {256, 256, 200, 200, {17, 9, 176, 176}},  // the face loader's crop
      {256, 256, 200, 200, {24, 24, 176, 176}},  // touching the bottom right corner
      {256, 256, 200, 200, {0, 0, 200, 200}},    // all of it
      {260, 348, 200, 200, {3, 190, 50, 4}},     // narrower than the vector kernels' 16 and 32 bytes
      {100, 37, 200, 75, {199, 0, 1, 75}},       // enlarging, the last row only
      {64, 64, 64, 31, {5, 7, 20, 20}},          // horizontal only
      {64, 64, 17, 64, {5, 7, 10, 40}},          // vertical only
      {64, 64, 64, 64, {5, 7, 10, 40}},          // no resize: a copy
  };
  uint64_t seed = 100;
  for (const Case& c : cases)
    for (const int64_t channels : {1, 3, 4}) {
      const torch::Tensor in = noise(c.rows, c.cols, channels, ++seed);
      const torch::Tensor whole = torch_resize(in, c.out_rows, c.out_cols);
      const image::OutputWindow& w = c.window;
      for (const auto kernels : {ResampleKernels::best, ResampleKernels::avx2, ResampleKernels::portable}) {
        torch::Tensor out = torch::full({c.out_rows, c.out_cols, channels}, 171, torch::kUInt8);
        image::resize_antialiased({in.data_ptr<uint8_t>(), c.rows, c.cols, channels, in.stride(0)},
                                  out.data_ptr<uint8_t>(), c.out_rows, c.out_cols, w, kernels);
        const auto rows = torch::indexing::Slice(w.top, w.top + w.rows), cols = torch::indexing::Slice(w.left, w.left + w.cols);
        const std::string where = fmt::format("{}x{}x{} -> {}x{}, window {}x{} at ({}, {}) ({})", c.rows, c.cols,
                                              channels, c.out_rows, c.out_cols, w.rows, w.cols, w.top, w.left,
                                              kernel_name(kernels));
        EXPECT_TRUE(torch::equal(out.index({rows, cols}), whole.index({rows, cols}))) << where;
        out.index_put_({rows, cols}, 171);
        EXPECT_TRUE(torch::equal(out, torch::full_like(out, 171))) << where << ": wrote outside the window";
      }
    }
}

TEST(Resample, InputSpanOfAWindowByHand) {
  // 4 -> 2 (weights below): output 0 reads inputs 0-2, output 1 reads 1-3.
  EXPECT_EQ(image::input_span(4, 2, 0, 1), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(image::input_span(4, 2, 1, 2), (std::pair<int64_t, int64_t>{1, 4}));
  EXPECT_EQ(image::input_span(4, 2, 0, 2), (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(image::input_span(7, 7, 2, 5), (std::pair<int64_t, int64_t>{2, 5}));
}

TEST(Resample, RefusesAWindowOutsideTheOutput) {
  const std::vector<uint8_t> pixels(48);
  std::vector<uint8_t> out(12);
  try {
    image::resize_antialiased({pixels.data(), 4, 4, 3, 12}, out.data(), 2, 2, image::OutputWindow{1, 0, 2, 2});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "resize: the window of 2x2 pixels at row 1, column 0 is not inside the 2x2 output");
  }
}

TEST(Resample, WeightsOfAHalvingAxisByHand) {
  // 4 -> 2: scale 2, the tent 2 wide each side. Output 0 is centred on 1.0 and reads inputs 0-2 at
  // distances 0.5, 0.5, 1.5 (tent 0.75, 0.75, 0.25, sum 1.75); 3/7 * 2^16 < 2^15 <= 3/7 * 2^17.
  const image::AxisWeights axis = image::AxisWeights::make(4, 2);
  EXPECT_EQ(axis.precision, 16u);
  EXPECT_EQ(axis.taps, 4);  // three inputs per output, padded to 4
  EXPECT_EQ(axis.first, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(axis.count, (std::vector<int32_t>{3, 3}));
  EXPECT_EQ(axis.weights, (std::vector<int16_t>{28087, 28087, 9362, 0,  //
                                                9362, 28087, 28087, 0}));
}

TEST(Resample, RefusesARowStrideShorterThanTheRow) {
  const std::vector<uint8_t> pixels(64);
  std::vector<uint8_t> out(16);
  try {
    image::resize_antialiased({pixels.data(), 4, 4, 3, 8}, out.data(), 2, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "resize: a row stride of 8 bytes is shorter than a row (12 bytes)");
  }
}

}  // namespace
}  // namespace facet::data::test_resample
