// DICOM and image I/O against files other software wrote: the pydicom wheel's test files (NEMA
// samples converted by DCMTK and GDCM) and pydicom's decoding of them (tools/golden/dicom_golden.py).
#include "core/error.h"
#include "core/safetensors.h"
#include "data/image/dicom.h"
#include "data/image/image_io.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::image {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kDir = fs::path(FACET_SOURCE_DIR) / "tests/fixtures/dicom";

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_image", name); }

using test_support::message_of;

// pydicom's pixels as [C, H, W] (monochrome goldens are [H, W], colour [H, W, 3]).
torch::Tensor golden(const std::string& name) {
  static const safetensors::File file(kDir / "pixels.safetensors");
  const torch::Tensor t = file.tensor(name);
  return t.dim() == 2 ? t.unsqueeze(0) : t.permute({2, 0, 1}).contiguous();
}

nlohmann::json golden_info(const std::string& name) {
  static const safetensors::File file(kDir / "pixels.safetensors");
  return nlohmann::json::parse(file.metadata().at(name));
}

TEST(Dicom, MonochromeFilesMatchPydicomInEveryTransferSyntax) {
  for (const std::string name : {"CT_small", "MR_small", "MR_small_bigendian", "MR_small_implicit", "CT_small_fractional_slope"}) {
    const DicomFrame f = read_dicom(kDir / (name + ".dcm"));
    const torch::Tensor expected = golden(name);
    ASSERT_EQ(f.pixels.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(torch::equal(f.pixels, expected)) << name << ": max diff " << (f.pixels - expected).abs().max().item<float>();
    const auto info = golden_info(name);
    EXPECT_EQ(f.photometric, info["PhotometricInterpretation"]) << name;
    EXPECT_EQ(f.bits_stored, info["BitsStored"]) << name;
    EXPECT_DOUBLE_EQ(f.slope, info["RescaleSlope"].get<double>()) << name;
    EXPECT_DOUBLE_EQ(f.intercept, info["RescaleIntercept"].get<double>()) << name;
    EXPECT_EQ(f.transfer_syntax, info["TransferSyntaxUID"]) << name;
  }
  // CT in Hounsfield units: air below -800 somewhere, intercept -1024 applied.
  EXPECT_EQ(read_dicom(kDir / "CT_small.dcm").intercept, -1024);
}

TEST(Dicom, CompressedCopiesDecodeToTheSamePixels) {
  // RLE and JPEG-LS lossless encodings of MR_small (DCMTK's decoders vs the uncompressed original).
  const torch::Tensor expected = golden("MR_small");
  for (const std::string name : {"MR_small_RLE", "MR_small_jpeg_ls_lossless"}) {
    const DicomFrame f = read_dicom(kDir / (name + ".dcm"));
    EXPECT_TRUE(torch::equal(f.pixels, expected)) << name;
    EXPECT_NE(f.transfer_syntax, "1.2.840.10008.1.2.1") << name;
  }
}

TEST(Dicom, ColourFilesMatchPydicom) {
  for (const std::string name : {"SC_rgb_small_odd", "SC_rgb_rle", "SC_rgb_rle_16bit"}) {
    const DicomFrame f = read_dicom(kDir / (name + ".dcm"));
    const torch::Tensor expected = golden(name);
    ASSERT_EQ(f.pixels.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(torch::equal(f.pixels, expected)) << name;
  }
}

TEST(Dicom, Monochrome1IsInvertedWithinTheStoredRange) {
  // pydicom wrote MR_small with MONOCHROME1: same stored values, the other polarity.
  const auto info = golden_info("MR_small_monochrome1");
  ASSERT_EQ(info["PhotometricInterpretation"], "MONOCHROME1");
  const torch::Tensor modality = golden("MR_small_monochrome1");
  const DicomFrame f = read_dicom(kDir / "MR_small_monochrome1.dcm");
  EXPECT_TRUE(f.inverted);
  // Signed 16-bit storage: the stored range is [-32768, 32767], so v -> (-32768 + 32767) - v.
  ASSERT_EQ(info["PixelRepresentation"], 1);
  ASSERT_EQ(info["BitsStored"], 16);
  EXPECT_TRUE(torch::equal(f.pixels, -1 - modality));
  DicomReadOptions keep;
  keep.invert_monochrome1 = false;
  EXPECT_TRUE(torch::equal(read_dicom(kDir / "MR_small_monochrome1.dcm", keep).pixels, modality));
}

TEST(Dicom, WindowMapsToUnitRangeByTheStandardLinearFunction) {
  const auto info = golden_info("MR_small");
  DicomReadOptions o;
  o.apply_window = true;
  const DicomFrame f = read_dicom(kDir / "MR_small.dcm", o);
  ASSERT_TRUE(f.window.has_value());
  EXPECT_DOUBLE_EQ(f.window->first, info["WindowCenter"].get<double>());
  EXPECT_DOUBLE_EQ(f.window->second, info["WindowWidth"].get<double>());
  const double c = f.window->first, w = f.window->second;
  const torch::Tensor expected = ((golden("MR_small") - (c - 0.5)) / (w - 1) + 0.5).clamp(0, 1);
  EXPECT_TRUE(f.windowed);
  EXPECT_TRUE(torch::allclose(f.pixels, expected, 1e-6, 1e-6));
}

TEST(Dicom, BadFilesAreErrorsNamingTheFile) {
  EXPECT_THAT(message_of([] { read_dicom(kDir / "MR_truncated.dcm"); }), HasSubstr("MR_truncated.dcm:"));
  EXPECT_THAT(message_of([] { read_dicom(kDir / "missing.dcm"); }), HasSubstr("missing.dcm: no such DICOM file"));
  const fs::path dir = fresh_dir("dicom_bad");
  std::ofstream(dir / "text.dcm") << "hello, not DICOM";
  EXPECT_THAT(message_of([&] { read_dicom(dir / "text.dcm"); }), HasSubstr("text.dcm: not a readable DICOM file"));
  EXPECT_THAT(message_of([] { DicomReadOptions o; o.frame = 3; read_dicom(kDir / "MR_small.dcm", o); }),
              HasSubstr("frame 3 requested, the file has 1"));
  // Every prefix of a real file is an error or a full image, never a crash.
  std::ifstream in(kDir / "MR_small.dcm", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t cut = 0; cut < bytes.size(); cut += 97) {
    std::ofstream(dir / "cut.dcm", std::ios::binary) << bytes.substr(0, cut);
    try {
      const DicomFrame f = read_dicom(dir / "cut.dcm");
      EXPECT_EQ(f.pixels.numel(), 64 * 64) << cut;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cut.dcm")) << cut;
    }
  }
}

TEST(Dicom, WrittenFilesReadBackWithTheirTags) {
  const fs::path dir = fresh_dir("dicom_write");
  const torch::Tensor stored = torch::arange(12 * 10, torch::kInt32).view({12, 10}) * 30;
  DicomWriteOptions o;
  o.bits_stored = 12;
  o.window = std::make_pair(2048.0, 4096.0);
  o.photometric = "MONOCHROME1";
  write_dicom(dir / "x.dicom", stored, o);
  EXPECT_TRUE(looks_like_dicom(dir / "x.dicom"));
  DicomReadOptions keep;
  keep.invert_monochrome1 = false;
  const DicomFrame f = read_dicom(dir / "x.dicom", keep);
  EXPECT_TRUE(torch::equal(f.pixels, stored.unsqueeze(0).to(torch::kFloat)));
  EXPECT_EQ(f.photometric, "MONOCHROME1");
  EXPECT_EQ(f.bits_stored, 12);
  EXPECT_EQ(f.window->second, 4096.0);
  EXPECT_TRUE(torch::equal(read_dicom(dir / "x.dicom").pixels, 4095 - stored.unsqueeze(0).to(torch::kFloat)));
  EXPECT_THAT(message_of([&] { write_dicom(dir / "y.dicom", stored * 100, o); }), HasSubstr("outside 0..4095"));
}

TEST(ImageIo, ReadsEightAndSixteenBitPngJpegAndDicom) {
  const fs::path dir = fresh_dir("image_io");
  cv::Mat grey16(5, 7, CV_16UC1);
  for (int i = 0; i < 35; ++i) grey16.at<uint16_t>(i) = static_cast<uint16_t>(i * 1800);
  cv::imwrite((dir / "g16.png").string(), grey16);
  const torch::Tensor g = read_image(dir / "g16.png");
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{1, 5, 7}));
  EXPECT_EQ(g.max().item<float>(), 34 * 1800);
  cv::Mat bgr(4, 6, CV_8UC3, cv::Scalar(10, 20, 30));  // B, G, R
  cv::imwrite((dir / "c.png").string(), bgr);
  EXPECT_TRUE(torch::equal(read_image(dir / "c.png").select(1, 0).select(1, 0), torch::tensor({30.f, 20.f, 10.f})));
  cv::imwrite((dir / "c.jpg").string(), bgr);
  EXPECT_EQ(read_image(dir / "c.jpg").sizes(), (std::vector<int64_t>{3, 4, 6}));
  EXPECT_TRUE(torch::equal(read_image(kDir / "CT_small.dcm"), golden("CT_small")));
}

TEST(ImageIo, TruncatedOrMissingFilesAreErrorsNamingTheFile) {
  const fs::path dir = fresh_dir("image_bad");
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 255);
  cv::imwrite((dir / "full.jpg").string(), noise);
  cv::imwrite((dir / "full.png").string(), noise);
  for (const std::string ext : {"jpg", "png"}) {
    std::ifstream in(dir / ("full." + ext), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir / ("cut." + ext), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    EXPECT_THAT(message_of([&] { read_image(dir / ("cut." + ext)); }), HasSubstr("cut." + ext + ": ")) << ext;
  }
  EXPECT_THAT(message_of([&] { read_image(dir / "cut.jpg"); }), HasSubstr("truncated JPEG"));
  EXPECT_THAT(message_of([&] { read_image(dir / "none.png"); }), HasSubstr("none.png: no such image file"));
  std::ofstream(dir / "empty.png").close();
  EXPECT_THAT(message_of([&] { read_image(dir / "empty.png"); }), HasSubstr("empty.png: empty image file"));
}

}  // namespace
}  // namespace facet::data::image
