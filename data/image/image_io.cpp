#include "data/image/image_io.h"

#include "core/error.h"
#include "core/file_io.h"
#include "data/image/jpeg.h"
#include "data/image/png.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <climits>
#include <string_view>

namespace facet::data::image {
namespace fs = std::filesystem;

bool is_dicom_path(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".dcm" || ext == ".dicom" || (ext.empty() && looks_like_dicom(path));
}

namespace {

// Whether the file starts like a format we hand to OpenCV (PNG kinds our decoder leaves, TIFF, BMP,
// WebP). Anything else is refused before decoding, which would otherwise try every codec OpenCV has —
// GDCM among them, which asserts (aborts) on damaged files (found by fuzz_image).
bool opencv_format(std::string_view head) {
  return is_png(head) || head.starts_with(std::string_view("II*\0", 4)) ||
         head.starts_with(std::string_view("MM\0*", 4)) || head.starts_with("BM") ||
         (head.starts_with("RIFF") && head.size() >= 12 && head.substr(8, 4) == "WEBP");
}

}  // namespace

std::string read_image_file(const fs::path& path, std::string_view kind) {
  try {
    return read_file(path);
  } catch (const Error&) {
    if (!fs::exists(path)) fail("{}: no such {} file", path.string(), kind);
    throw;
  }
}

cv::Mat read_image_mat(const fs::path& path, int64_t min_side, int* reduction) {
  return decode_image_mat(path, read_image_file(path), min_side, reduction);
}

cv::Mat decode_image_mat(const fs::path& path, std::string_view file, int64_t min_side, int* reduction) {
  if (reduction) *reduction = 1;
  if (file.empty()) fail("{}: empty image file", path.string());
  if (file.starts_with("\xFF\xD8")) return decode_jpeg(path, file, min_side, reduction);
  if (is_png(file))
    if (auto png = decode_png(path, file)) return *png;  // else a kind our decoder leaves to OpenCV
  if (!opencv_format(file)) fail("{}: not a PNG, JPEG, TIFF, BMP or WebP image", path.string());
  if (file.size() > INT_MAX) fail("{}: {} bytes, more than OpenCV decodes", path.string(), file.size());
  const cv::Mat encoded(1, static_cast<int>(file.size()), CV_8UC1, const_cast<char*>(file.data()));
  const cv::Mat raw = cv::imdecode(encoded, cv::IMREAD_UNCHANGED);
  if (raw.empty()) fail("{}: cannot decode the image (truncated or damaged)", path.string());
  if (raw.depth() != CV_8U && raw.depth() != CV_16U)
    fail("{}: unsupported pixel depth (only 8- and 16-bit images)", path.string());
  cv::Mat rgb;
  switch (raw.channels()) {
    case 1: rgb = raw; break;
    case 3: cv::cvtColor(raw, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(raw, rgb, cv::COLOR_BGRA2RGB); break;
    default: fail("{}: {} channels (expected 1, 3 or 4)", path.string(), raw.channels());
  }
  return rgb;
}

torch::Tensor read_image(const fs::path& path, const DicomReadOptions& dicom) {
  if (is_dicom_path(path)) {
    if (!fs::exists(path)) fail("{}: no such image file", path.string());
    return read_dicom(path, dicom).pixels;
  }
  return mat_to_chw(read_image_mat(path));  // says itself when the file is missing
}

torch::Tensor mat_to_chw(const cv::Mat& image) {
  if (image.depth() != CV_8U && image.depth() != CV_16U) fail("image: only 8- and 16-bit pixels convert");
  cv::Mat source = image;
  if (image.depth() == CV_16U) image.convertTo(source, CV_32F);  // torch's uint16 support is partial
  const torch::ScalarType type = source.depth() == CV_32F ? torch::kFloat : torch::kUInt8;
  const int64_t c = source.channels();
  const torch::Tensor hwc = torch::from_blob(source.data, {source.rows, source.cols, c},
                                             {static_cast<int64_t>(source.step1()), c, 1}, type);
  // One pass: the strided read and the float conversion happen in the same copy.
  torch::Tensor out = torch::empty({c, source.rows, source.cols}, torch::kFloat);
  out.copy_(hwc.permute({2, 0, 1}));
  return out;
}

}  // namespace facet::data::image
