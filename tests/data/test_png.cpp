// The libdeflate PNG decoder against OpenCV's libpng on the kinds OpenCV writes (8/16-bit grey, RGB,
// RGBA; libpng's adaptive row filters on gradients and noise; grey + alpha, which OpenCV cannot write,
// is reached by the fuzzer only), the kinds it leaves to OpenCV, and damaged files named in the error.
#include "core/error.h"
#include "data/image/image_io.h"
#include "data/image/png.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>

namespace facet::data::test_png {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path dir() { return test_support::scratch_dir("facet_png", "files"); }

// Gradients in the top half (Sub/Up/Average/Paeth pay there), noise in the bottom (None does).
cv::Mat picture(int depth, int channels) {
  cv::Mat m(37, 53, CV_MAKETYPE(depth, channels));
  cv::RNG rng(7);
  const double top = depth == CV_16U ? 65535.0 : 255.0;
  for (int y = 0; y < m.rows; ++y)
    for (int x = 0; x < m.cols; ++x)
      for (int c = 0; c < channels; ++c) {
        const double v = y < m.rows / 2 ? top * (x + 3 * y + 17 * c) / (m.cols + 3 * m.rows + 17 * channels) : rng.uniform(0.0, top);
        if (depth == CV_16U) m.ptr<uint16_t>(y)[x * channels + c] = static_cast<uint16_t>(v);
        else m.ptr<uint8_t>(y)[x * channels + c] = static_cast<uint8_t>(v);
      }
  return m;
}

TEST(Png, DecodesLikeLibpngForEveryKindItCovers) {
  for (const int depth : {CV_8U, CV_16U})
    for (const int channels : {1, 3, 4}) {
      SCOPED_TRACE(fmt::format("depth {} channels {}", depth == CV_8U ? 8 : 16, channels));
      const fs::path file = dir() / fmt::format("kind_{}_{}.png", depth, channels);
      ASSERT_TRUE(cv::imwrite(file.string(), picture(depth, channels)));
      const auto ours = image::decode_png(file);
      ASSERT_TRUE(ours.has_value());
      // libpng through OpenCV, in our channel order: grey, or RGB without alpha.
      cv::Mat reference = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
      if (reference.channels() == 3) cv::cvtColor(reference, reference, cv::COLOR_BGR2RGB);
      if (reference.channels() == 4) cv::cvtColor(reference, reference, cv::COLOR_BGRA2RGB);
      ASSERT_EQ(ours->type(), reference.type());
      ASSERT_EQ(ours->size(), reference.size());
      EXPECT_EQ(cv::norm(*ours, reference, cv::NORM_INF), 0.0);
    }
}

TEST(Png, LeavesPaletteAndLowBitDepthsToOpenCv) {
  const fs::path file = dir() / "bilevel.png";
  cv::Mat bits(16, 16, CV_8UC1, cv::Scalar(0));
  bits(cv::Rect(0, 0, 8, 16)).setTo(255);
  ASSERT_TRUE(cv::imwrite(file.string(), bits, {cv::IMWRITE_PNG_BILEVEL, 1}));
  EXPECT_FALSE(image::decode_png(file).has_value());
  const torch::Tensor read = image::read_image(file);  // through OpenCV
  EXPECT_EQ(read.sizes(), (std::vector<int64_t>{1, 16, 16}));
  EXPECT_EQ(read[0][0][0].item<float>(), 255.0f);
  EXPECT_EQ(read[0][0][15].item<float>(), 0.0f);
}

TEST(Png, DamagedFilesAreErrorsNamingTheFile) {
  const fs::path good = dir() / "good.png";
  ASSERT_TRUE(cv::imwrite(good.string(), picture(CV_16U, 1)));
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& name, const std::string& content) {
    const fs::path p = dir() / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  auto message = [](const fs::path& p) {
    try {
      image::read_image(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] = static_cast<char>(flipped[bytes.size() / 2] ^ 0x40);  // inside IDAT
  const fs::path crc = write("flipped.png", flipped);
  EXPECT_THAT(message(crc), HasSubstr(crc.string() + ": cannot decode the PNG (chunk CRC mismatch)"));
  const fs::path cut = write("cut.png", bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(message(cut), HasSubstr(cut.string() + ": cannot decode the PNG (truncated chunk)"));
}

// fuzz_image's find: a JPEG 2000 codestream with "DICM" inside, named .png. OpenCV's imread tried its
// codecs down to GDCM, which asserted (abort); such files are now refused before imread.
TEST(Png, FilesOfNoFormatWeReadAreRefusedBeforeOpenCv) {
  const fs::path file = test_support::source_path("tests/fixtures/png/gdcm_assert.png");
  try {
    image::read_image(file);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("gdcm_assert.png: not a PNG, JPEG, TIFF, BMP or WebP image"));
  }
}

}  // namespace
}  // namespace facet::data::test_png
