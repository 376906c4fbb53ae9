// DICOM and image I/O against files other software wrote: the pydicom wheel's test files (NEMA
// samples converted by DCMTK and GDCM) and pydicom's decoding of them (tools/golden/dicom_golden.py).
#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/image/dicom.h"
#include "data/image/image_io.h"
#include "data/vindr_cxr/vindr_cxr.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace facet::data::image::test_dicom {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kDir = fs::path(test_support::kSourceDir) / "tests/fixtures/dicom";

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
    ASSERT_TRUE(f.range.has_value()) << name;  // found in the conversion pass, after the rescale
    EXPECT_EQ(f.range->first, f.pixels.min().item<float>()) << name;
    EXPECT_EQ(f.range->second, f.pixels.max().item<float>()) << name;
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
  ASSERT_TRUE(f.range.has_value());  // the inversion swaps the ends
  EXPECT_EQ(f.range->first, f.pixels.min().item<float>());
  EXPECT_EQ(f.range->second, f.pixels.max().item<float>());
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
  EXPECT_FALSE(f.range.has_value()) << "the window clamps: the range is not carried through it";
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

// DCMTK's JPEG decoder, looking for the frame header's bit depth, never steps past a TEM marker
// (FF 01): a file with one there would hang the reader (found by fuzz_dicom). JPGExtended.dcm's
// frame header (FF C1) right after the SOI, made a TEM.
TEST(Dicom, ATemMarkerBeforeTheJpegFrameHeaderIsAnErrorNotAHang) {
  std::ifstream in(kDir / "JPGExtended.dcm", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t soi = bytes.find("\xFF\xD8\xFF\xC1");
  ASSERT_NE(soi, std::string::npos);
  ASSERT_EQ(bytes.find("\xFF\xD8", soi + 2), std::string::npos) << "one JPEG stream";
  bytes[soi + 3] = '\x01';
  const fs::path file = fresh_dir("dicom_tem") / "tem.dcm";
  std::ofstream(file, std::ios::binary) << bytes;
  EXPECT_THAT(message_of([&] { read_dicom(file); }),
              HasSubstr("tem.dcm: a TEM marker (FF 01) before the JPEG frame header"));
  EXPECT_EQ(read_dicom(kDir / "JPGExtended.dcm").pixels.dim(), 3) << "the file itself still reads";
}

// Bits above BitsStored (overlays, garbage) are not the pixel's: masked away, and with
// PixelRepresentation 1 the stored bits are a two's-complement number (DicomImage's and the
// standard's reading, PS3.5 §8.1.1). The file is written with 16 bits stored, then its BitsStored,
// HighBit and PixelRepresentation patched in place.
TEST(Dicom, BitsAboveBitsStoredAreMaskedAndSignExtended) {
  const fs::path dir = fresh_dir("dicom_bits");
  // Four times eight words with the extremes, then eight mid-range ones: the reader's 16-word vector
  // steps see every extreme and its scalar tail none, so both must be right.
  std::vector<int64_t> words;
  for (int repeat = 0; repeat < 4; ++repeat)
    for (const int64_t w : {0x0000, 0x07FF, 0x0800, 0x0FFF, 0xF123, 0x9800, 0xFFFF, 0x1001}) words.push_back(w ^ (repeat << 12));  // other garbage above bit 11
  words.insert(words.end(), 8, 0x0400);
  DicomWriteOptions o;
  o.bits_stored = 16;
  write_dicom(dir / "bits.dicom", torch::tensor(words).view({5, 8}), o);
  std::ifstream in(dir / "bits.dicom", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto patch = [&](uint16_t element, uint16_t value) {  // (0028,element) US, explicit VR little endian
    const std::string tag{'\x28', '\x00', static_cast<char>(element & 0xFF), static_cast<char>(element >> 8), 'U', 'S', '\x02', '\x00'};
    const size_t at = bytes.find(tag);
    ASSERT_NE(at, std::string::npos) << element;
    bytes[at + 8] = static_cast<char>(value & 0xFF);
    bytes[at + 9] = static_cast<char>(value >> 8);
  };
  patch(0x0101, 12);  // BitsStored
  patch(0x0102, 11);  // HighBit
  for (const int signed_pixels : {0, 1}) {
    patch(0x0103, static_cast<uint16_t>(signed_pixels));  // PixelRepresentation
    std::ofstream(dir / "patched.dicom", std::ios::binary) << bytes;
    std::vector<float> expected;
    for (const int64_t w : words) {
      const int64_t v = w & 0xFFF;
      expected.push_back(static_cast<float>(signed_pixels && v >= 0x800 ? v - 0x1000 : v));
    }
    DicomReadOptions keep;
    keep.invert_monochrome1 = false;
    const DicomFrame f = read_dicom(dir / "patched.dicom", keep);
    EXPECT_TRUE(torch::equal(f.pixels, torch::tensor(expected).view({1, 5, 8}))) << "signed " << signed_pixels << ": " << f.pixels;
    ASSERT_TRUE(f.range.has_value());
    EXPECT_EQ(f.range->first, *std::min_element(expected.begin(), expected.end()));
    EXPECT_EQ(f.range->second, *std::max_element(expected.begin(), expected.end()));
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
}  // namespace facet::data::image::test_dicom

namespace facet::data::image::test_dicom {
namespace {

// The transfer-syntax table: every syntax the README claims, a file other software wrote, compared
// pixel by pixel with pydicom + pylibjpeg (tools/golden/dicom_golden.py, codecs/). Lossless
// syntaxes must match exactly; lossy ones within the IDCT/rounding differences of two decoders.
TEST(DicomCodecs, EveryClaimedTransferSyntaxMatchesAnIndependentDecoder) {
  std::ifstream in(kDir / "codecs/codecs.json");
  const auto table = nlohmann::json::parse(in);
  struct Row {
    std::string syntax, fixture;
    double max_diff;
  };
  std::vector<Row> rows;
  // Uncompressed, RLE and JPEG-LS lossless fixtures of the older tests (goldens in pixels.safetensors).
  for (const std::string name : {"MR_small", "MR_small_implicit", "MR_small_bigendian", "MR_small_RLE",
                                 "MR_small_jpeg_ls_lossless", "SC_rgb_rle_16bit"}) {
    const DicomFrame f = read_dicom(kDir / (name + ".dcm"));
    const torch::Tensor expected = name == "SC_rgb_rle_16bit" ? golden(name) : golden("MR_small");
    ASSERT_EQ(f.pixels.sizes(), expected.sizes()) << name;
    const double diff = (f.pixels - expected).abs().max().item<double>();
    EXPECT_EQ(diff, 0) << name;
    rows.push_back({f.transfer_syntax + " " + f.transfer_syntax_name, name, diff});
  }
  for (const auto& [name, info] : table["files"].items()) {
    const int64_t frames = info["frames"];
    for (int64_t i = 0; i < frames; ++i) {
      DicomReadOptions o;
      o.frame = i;
      const DicomFrame f = read_dicom(kDir / (name + ".dcm"), o);
      EXPECT_EQ(f.transfer_syntax, info["syntax"]) << name;
      EXPECT_EQ(f.frames, frames) << name;
      const torch::Tensor expected =
          read_image(kDir / "codecs" / fmt::format("{}_{}.png", name, i)) + info["offset"].get<double>();
      ASSERT_EQ(f.pixels.sizes(), expected.sizes()) << name;
      const double diff = (f.pixels - expected).abs().max().item<double>();
      const double range = expected.max().item<double>() - expected.min().item<double>();
      if (info["lossless"].get<bool>())
        EXPECT_EQ(diff, 0) << name << " frame " << i;
      else  // two decoders of one lossy stream: a few grey levels at most
        EXPECT_LE(diff, std::max(2.0, 0.02 * range)) << name << " frame " << i;
      rows.push_back({info["syntax"].get<std::string>() + " " + info["syntax_name"].get<std::string>(),
                      frames > 1 ? fmt::format("{} (frame {})", name, i) : name, diff});
    }
  }
  std::cout << fmt::format("{:<86} {:<34} {}\n", "transfer syntax", "fixture (pydicom's test files)", "max |diff|");
  for (const Row& r : rows) std::cout << fmt::format("{:<86} {:<34} {:g}\n", r.syntax, r.fixture, r.max_diff);
}

TEST(DicomCodecs, Jpeg2000LosslessIsTheOriginalImage) {
  // The J2K lossless copy of MR_small decodes to the uncompressed file's pixels (signed 16-bit).
  const DicomFrame f = read_dicom(kDir / "MR_small_jp2klossless.dcm");
  EXPECT_EQ(f.transfer_syntax, "1.2.840.10008.1.2.4.90");
  EXPECT_TRUE(torch::equal(f.pixels, golden("MR_small")));
  // The window and MONOCHROME handling run on J2K pixels as on any other syntax.
  DicomReadOptions o;
  o.apply_window = true;
  EXPECT_TRUE(read_dicom(kDir / "MR_small_jp2klossless.dcm", o).windowed);
  EXPECT_TRUE(torch::allclose(read_dicom(kDir / "MR_small_jp2klossless.dcm", o).pixels, golden("MR_small_voi"), 1e-6, 1e-6));
}

TEST(DicomCodecs, MissingTransferSyntaxIsInferredAsPydicomDoes) {
  // Copies of MR_small whose file meta lacks (0002,0010), as some VinDr-CXR files do.
  for (const auto& [name, uid] : std::vector<std::pair<std::string, std::string>>{
           {"MR_small_no_tsyntax", "1.2.840.10008.1.2.1"},
           {"MR_small_implicit_no_tsyntax", "1.2.840.10008.1.2"},
           {"MR_small_bigendian_no_tsyntax", "1.2.840.10008.1.2.2"}}) {
    const DicomFrame f = read_dicom(kDir / (name + ".dcm"));
    EXPECT_TRUE(f.transfer_syntax_inferred) << name;
    EXPECT_EQ(f.transfer_syntax, uid) << name;
    EXPECT_TRUE(torch::equal(f.pixels, golden("MR_small"))) << name;
  }
  EXPECT_FALSE(read_dicom(kDir / "MR_small.dcm").transfer_syntax_inferred);
}

TEST(DicomCodecs, UndecodableSyntaxIsAnErrorNamingFileAndSyntax) {
  // The J2K file relabelled as JPEG 2000 Part 2 multi-component (same UID length): no decoder.
  std::ifstream in(kDir / "MR_small_jp2klossless.dcm", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find("1.2.840.10008.1.2.4.90");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 22, "1.2.840.10008.1.2.4.92");
  const fs::path dir = fresh_dir("dicom_syntax");
  std::ofstream(dir / "part2.dcm", std::ios::binary) << bytes;
  const std::string message = message_of([&] { read_dicom(dir / "part2.dcm"); });
  EXPECT_THAT(message, HasSubstr("part2.dcm: cannot decode the pixel data"));
  EXPECT_THAT(message, HasSubstr("1.2.840.10008.1.2.4.92 (JPEG 2000 Part 2"));
  // A damaged J2K code stream is an error naming the file, never a crash.
  std::ifstream j2k(kDir / "MR_small_jp2klossless.dcm", std::ios::binary);
  std::string good((std::istreambuf_iterator<char>(j2k)), std::istreambuf_iterator<char>());
  const size_t soc = good.find("\xFF\x4F\xFF\x51");
  ASSERT_NE(soc, std::string::npos);
  for (const size_t cut : {soc + 4, soc + 60, soc + 400}) {
    std::string damaged = good;
    for (size_t i = cut; i < std::min(cut + 32, damaged.size()); ++i) damaged[i] = static_cast<char>(0xA5);
    std::ofstream(dir / "damaged.dcm", std::ios::binary) << damaged;
    try {
      (void)read_dicom(dir / "damaged.dcm");
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("damaged.dcm: ")) << cut;
    }
  }
}

TEST(DicomCodecs, TwelveBitMonochrome1AndWindowMatchPydicomApplyVoiLut) {
  // MR_small stored as 12 of 16 bits, unsigned, MONOCHROME1, window 1100/1800 (a VinDr-like file).
  const auto info = golden_info("MR_small_12bit_monochrome1");
  ASSERT_EQ(info["BitsStored"], 12);
  ASSERT_EQ(info["PhotometricInterpretation"], "MONOCHROME1");
  const torch::Tensor modality = golden("MR_small_12bit_monochrome1");
  const DicomFrame plain = read_dicom(kDir / "MR_small_12bit_monochrome1.dcm");
  EXPECT_EQ(plain.bits_stored, 12);
  EXPECT_TRUE(torch::equal(plain.pixels, 4095 - modality));  // reflected within 0..4095
  DicomReadOptions o;
  o.apply_window = true;
  const DicomFrame windowed = read_dicom(kDir / "MR_small_12bit_monochrome1.dcm", o);
  // pydicom's apply_voi_lut does not invert MONOCHROME1; Facet's "bright = dense" does, after it.
  const double diff = (windowed.pixels - (1 - golden("MR_small_12bit_monochrome1_voi"))).abs().max().item<double>();
  EXPECT_LT(diff, 1e-6);
  o.invert_monochrome1 = false;
  EXPECT_LT((read_dicom(kDir / "MR_small_12bit_monochrome1.dcm", o).pixels - golden("MR_small_12bit_monochrome1_voi"))
                .abs().max().item<double>(), 1e-6);
  o.invert_monochrome1 = true;
  EXPECT_LT((read_dicom(kDir / "MR_small.dcm", o).pixels - golden("MR_small_voi")).abs().max().item<double>(), 1e-6);
}

}  // namespace
}  // namespace facet::data::image::test_dicom

namespace facet::data::test_dicom {
namespace {

// VinDr-CXR as distributed: every monochrome DICOM fixture (other software's files, all syntaxes
// above) laid out as <root>/train/<32-hex>.dicom with minimal annotation CSVs, read through
// `vindr_cxr`. Colour files are refused by the reader with a message (checked at the end).
TEST(DicomCodecs, VindrCxrLayoutOfThirdPartyFilesDecodesEveryImage) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(test_support::kSourceDir) / "tests/fixtures/dicom";
  const fs::path root = test_support::scratch_dir("facet_test_image", "vindr_layout");
  fs::create_directories(root / "annotations");
  fs::create_directories(root / "train");
  fs::create_directories(root / "test");
  std::string labels_header = "image_id,rad_id";
  for (auto l : vindr_cxr::kLocalLabels) labels_header += "," + std::string(l);
  for (auto l : vindr_cxr::kGlobalLabels) labels_header += "," + std::string(l);
  std::string no_finding;
  for (size_t i = 0; i < vindr_cxr::kNumLabels; ++i) no_finding += i + 1 == vindr_cxr::kNumLabels ? ",1" : ",0";
  std::ofstream labels(root / "annotations/image_labels_train.csv"), boxes(root / "annotations/annotations_train.csv");
  labels << labels_header << "\n";
  boxes << "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n";
  std::vector<std::pair<std::string, fs::path>> files;
  std::vector<fs::path> sources;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".dcm" && entry.path().stem() != "MR_truncated" &&
        image::read_dicom(entry.path()).pixels.size(0) == 1)
      sources.push_back(entry.path());
  ASSERT_GE(sources.size(), 15u);
  std::sort(sources.begin(), sources.end());
  for (size_t i = 0; i < sources.size(); ++i) {
    const std::string id = fmt::format("{:016x}{:016x}", 0x9e3779b97f4a7c15ULL * (i + 1), i);
    fs::copy_file(sources[i], root / "train" / (id + ".dicom"));
    labels << id << ",R1" << no_finding << "\n";
    boxes << id << ",R1,No finding,,,,\n";
    files.emplace_back(id, sources[i]);
  }
  labels.close();
  boxes.close();
  std::ofstream(root / "annotations/image_labels_test.csv") << "image_id" << labels_header.substr(std::string("image_id,rad_id").size()) << "\n";
  std::ofstream(root / "annotations/annotations_test.csv") << "image_id,class_name,x_min,y_min,x_max,y_max\n";
  const auto config = Config::parse("data:\n  name: vindr_cxr\n  root: " + root.string() + "\n", "test.yaml");
  const auto dataset = dataset_registry().create(config.at("data"), "train");
  ASSERT_EQ(dataset->size(), static_cast<int64_t>(files.size()));
  for (int64_t i = 0; i < dataset->size(); ++i) {
    const Sample s = dataset->get(i, 0);
    const auto it = std::find_if(files.begin(), files.end(), [&](const auto& f) { return s.id.find(f.first) != std::string::npos; });
    ASSERT_NE(it, files.end()) << s.id;
    const image::DicomFrame f = image::read_dicom(it->second);
    EXPECT_EQ(s.fields.at("image").size(-2), f.rows) << it->second;
    EXPECT_EQ(s.fields.at("image").size(-1), f.columns) << it->second;
    EXPECT_TRUE(torch::isfinite(s.fields.at("image")).all().item<bool>()) << it->second;
  }
  std::cout << "vindr_cxr layout: " << files.size() << " third-party monochrome DICOMs decoded\n";
  fs::copy_file(dir / "SC_rgb_jpeg_dcmtk.dcm", root / "train" / (files.front().first + ".dicom"),
                fs::copy_options::overwrite_existing);
  int refused = 0;
  for (int64_t i = 0; i < dataset->size(); ++i) try {
      (void)dataset->get(i, 0);
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(files.front().first + ".dicom: expected a monochrome radiograph"));
      ++refused;
    }
  EXPECT_EQ(refused, 1);
}

}  // namespace
}  // namespace facet::data::test_dicom
