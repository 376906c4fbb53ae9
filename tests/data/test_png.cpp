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

#include <libdeflate.h>

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

// A PNG written here with every row under one filter type (the forward filters of PNG spec §9),
// so that each of the decoder's five inverse filters meets every pixel size; libpng's adaptive
// choice above does not promise that.
std::string png_with_filter(const cv::Mat& image, int colour_type, uint8_t filter) {
  const size_t channels = static_cast<size_t>(image.channels()), sample = image.elemSize1();
  const size_t bpp = channels * sample, stride = static_cast<size_t>(image.cols) * bpp;
  std::vector<uint8_t> filtered, prior(stride, 0), row(stride);
  for (int y = 0; y < image.rows; ++y) {
    for (size_t i = 0; i < stride; ++i)  // big-endian samples
      row[i] = sample == 1 ? image.ptr<uint8_t>(y)[i] : static_cast<uint8_t>(image.ptr<uint16_t>(y)[i / 2] >> (i % 2 ? 0 : 8));
    filtered.push_back(filter);
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= bpp ? row[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
      const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
      const int predicted = filter == 0 ? 0 : filter == 1 ? a : filter == 2 ? b : filter == 3 ? (a + b) / 2
                            : pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      filtered.push_back(static_cast<uint8_t>(row[i] - predicted));
    }
    prior = row;
  }
  libdeflate_compressor* z = libdeflate_alloc_compressor(6);
  std::vector<uint8_t> compressed(libdeflate_zlib_compress_bound(z, filtered.size()));
  compressed.resize(libdeflate_zlib_compress(z, filtered.data(), filtered.size(), compressed.data(), compressed.size()));
  libdeflate_free_compressor(z);
  std::string out("\x89PNG\r\n\x1a\n", 8);
  auto put32 = [](std::string& to, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) to.push_back(static_cast<char>(v >> shift));
  };
  auto chunk = [&](const char* type, const std::string& data) {
    put32(out, static_cast<uint32_t>(data.size()));
    const std::string body = type + data;
    out += body;
    put32(out, libdeflate_crc32(0, body.data(), body.size()));
  };
  std::string header;
  put32(header, static_cast<uint32_t>(image.cols));
  put32(header, static_cast<uint32_t>(image.rows));
  header += {static_cast<char>(sample * 8), static_cast<char>(colour_type), 0, 0, 0};
  chunk("IHDR", header);
  chunk("IDAT", std::string(compressed.begin(), compressed.end()));
  chunk("IEND", "");
  return out;
}

TEST(Png, EveryRowFilterAtEveryPixelSize) {
  cv::RNG rng(11);
  for (const int depth : {CV_8U, CV_16U})
    for (const auto& [channels, colour_type] : std::vector<std::pair<int, int>>{{1, 0}, {2, 4}, {3, 2}, {4, 6}}) {
      cv::Mat image(7, 9, CV_MAKETYPE(depth, channels));
      rng.fill(image, cv::RNG::UNIFORM, 0, depth == CV_8U ? 256 : 65536);
      cv::Mat expected;  // grey or RGB: alpha dropped
      if (channels == 2) cv::extractChannel(image, expected, 0);
      else if (channels == 4) cv::cvtColor(image, expected, cv::COLOR_RGBA2RGB);
      else expected = image;
      for (uint8_t filter = 0; filter <= 4; ++filter) {
        SCOPED_TRACE(fmt::format("{}-bit, {} channel(s), filter {}", depth == CV_8U ? 8 : 16, channels, filter));
        const auto ours = image::decode_png("filtered.png", png_with_filter(image, colour_type, filter));
        ASSERT_TRUE(ours.has_value());
        ASSERT_EQ(ours->type(), expected.type());
        EXPECT_EQ(cv::norm(*ours, expected, cv::NORM_INF), 0.0);
      }
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
