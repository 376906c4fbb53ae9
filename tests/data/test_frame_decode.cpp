// Face frames decoded at a reduced JPEG scale (libjpeg-turbo's scaled inverse DCT) when the reader
// shrinks them anyway: the factor chosen, the pixels against the full decode + the same resize, and
// the landmarks scaled by the stored frame's size, not the decoded one.
#include "core/error.h"
#include "data/face/face_io.h"
#include "data/image/jpeg.h"
#include "tests/support/scratch.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>
#include <tuple>

namespace facet::data::test_frame_decode {
namespace {

namespace fs = std::filesystem;

// A smooth colour frame (gradients and a disc), as a quality-95 JPEG of `rows` x `cols`.
fs::path smooth_jpeg(const std::string& name, int rows, int cols) {
  cv::Mat bgr(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(255 * x / cols), static_cast<uchar>(255 * y / rows), 90);
  cv::circle(bgr, {cols / 2, rows / 2}, rows / 4, cv::Scalar(30, 200, 240), -1, cv::LINE_AA);
  const fs::path path = test_support::scratch_dir("facet_frame_decode", name) / "frame.jpg";
  EXPECT_TRUE(cv::imwrite(path.string(), bgr, {cv::IMWRITE_JPEG_QUALITY, 95}));
  return path;
}

// The reference: every pixel decoded, then torch's antialiased resize of the uint8 frame
// (torchvision's Resize on a tensor), as float [3, size, size].
torch::Tensor decoded_then_resized(const fs::path& path, int64_t size) {
  const cv::Mat full = image::decode_jpeg(path);  // rows padded: strided by the Mat's step
  const int64_t step = static_cast<int64_t>(full.step1());
  const torch::Tensor nchw =
      torch::from_blob(full.data, {1, full.rows, full.cols, 3}, {full.rows * step, step, 3, 1}, torch::kUInt8)
          .permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  return F::interpolate(nchw, F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kBilinear)
                                  .align_corners(false).antialias(true))[0].to(torch::kFloat);
}

// libjpeg-turbo writes a colour row that starts on a 16- or 32-byte boundary with non-temporal
// stores, and the reader's resize would then read the frame back from memory: no decoded row may
// start on one, whatever the width, colour or grey. The pixels are OpenCV's decode of the file.
TEST(FrameDecode, NoDecodedRowStartsOnASixteenByteBoundary) {
  for (const auto& [name, rows, cols] : {std::tuple{"square", 64, 64}, std::tuple{"odd", 37, 91}}) {
    const fs::path path = smooth_jpeg(name, rows, cols);
    const cv::Mat rgb = image::decode_jpeg(path);
    cv::Mat grey;
    cv::cvtColor(cv::imread(path.string()), grey, cv::COLOR_BGR2GRAY);
    const fs::path grey_path = path.parent_path() / "grey.jpg";
    ASSERT_TRUE(cv::imwrite(grey_path.string(), grey));
    for (const cv::Mat& m : {rgb, image::decode_jpeg(grey_path)}) {
      ASSERT_EQ(m.rows, rows);
      ASSERT_EQ(m.cols, cols);
      for (int r = 0; r < m.rows; ++r)
        EXPECT_NE(reinterpret_cast<uintptr_t>(m.ptr(r)) % 16, 0u) << name << " row " << r << ", " << m.channels() << " channel(s)";
    }
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    EXPECT_EQ(cv::norm(bgr, cv::imread(path.string()), cv::NORM_INF), 0) << name << ": not OpenCV's decode";
  }
}

TEST(FrameDecode, PicksTheLargestReductionThatKeepsBothSidesAndDividesThem) {
  const fs::path bp4d = smooth_jpeg("bp4d", 1040, 1392);  // BP4D's frame size
  int reduction = 0;
  const cv::Mat quarter = image::decode_jpeg(bp4d, 200, &reduction);
  EXPECT_EQ(reduction, 4);  // 1/8 would give 130 rows
  EXPECT_EQ(quarter.rows, 260);
  EXPECT_EQ(quarter.cols, 348);
  EXPECT_EQ(image::decode_jpeg(bp4d, 0, &reduction).rows, 1040);
  EXPECT_EQ(reduction, 1);
  EXPECT_EQ(image::decode_jpeg(bp4d, 600, &reduction).rows, 1040);  // 520 rows at 1/2 is too few
  EXPECT_EQ(reduction, 1);
  // A side a factor does not divide would scale coordinates inexactly: the next factor, or none.
  image::decode_jpeg(smooth_jpeg("even", 1040, 1390), 200, &reduction);
  EXPECT_EQ(reduction, 2);
  image::decode_jpeg(smooth_jpeg("odd", 1040, 1389), 200, &reduction);
  EXPECT_EQ(reduction, 1);
}

TEST(FrameDecode, ReducedDecodeMatchesTheFullDecodeAndMovesLandmarksAlike) {
  const fs::path path = smooth_jpeg("frame", 1040, 1392);
  torch::Tensor landmarks = torch::tensor({{100.5f, 50.5f}, {1300.0f, 1000.0f}});
  const torch::Tensor fast = face::read_frame(path, 200, &landmarks);
  ASSERT_EQ(fast.sizes(), (std::vector<int64_t>{3, 200, 200}));
  EXPECT_TRUE(torch::allclose(landmarks, torch::tensor({{100.5f * 200 / 1392, 50.5f * 200 / 1040},
                                                        {1300.0f * 200 / 1392, 1000.0f * 200 / 1040}})));
  const torch::Tensor reference = decoded_then_resized(path, 200);
  const double mean_diff = (fast - reference).abs().mean().item<double>();
  EXPECT_LT(mean_diff, 1.5) << "grey levels";
  EXPECT_GT(mean_diff, 0.0) << "the reduced path was not taken";
}

TEST(FrameDecode, AFrameResizedInTheReaderIsBitwiseTorchvisionsResize) {
  const fs::path path = smooth_jpeg("resized", 256, 256);  // too small for a reduced decode to 200
  const torch::Tensor frame = face::read_frame(path, 200, nullptr);
  const torch::Tensor reference = decoded_then_resized(path, 200);
  EXPECT_TRUE(torch::equal(frame, reference));
}

// fuzz_image's find: a header claiming 60000 x 60000 pixels made the decoder allocate 10 GB.
TEST(FrameDecode, AJpegClaimingAHugeSizeIsRefusedBeforeAllocating) {
  const fs::path small = smooth_jpeg("huge", 16, 16);
  std::ifstream in(small, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t sof = bytes.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  for (const size_t at : {sof + 5, sof + 7}) {  // height, then width, big-endian
    bytes[at] = static_cast<char>(0xEA);
    bytes[at + 1] = static_cast<char>(0x60);
  }
  const fs::path huge = small.parent_path() / "huge.jpg";
  std::ofstream(huge, std::ios::binary) << bytes;
  try {
    image::decode_jpeg(huge);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("huge.jpg: cannot decode the JPEG (60000x60000 pixels, more than 2^28)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace facet::data::test_frame_decode
