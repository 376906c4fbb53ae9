#include "data/image/image_io.h"

#include "core/error.h"
#include "data/image/jpeg.h"
#include "data/image/png.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <fstream>

namespace facet::data::image {
namespace fs = std::filesystem;

bool is_dicom_path(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".dcm" || ext == ".dicom" || (ext.empty() && looks_like_dicom(path));
}

cv::Mat read_image_mat(const fs::path& path, int64_t min_side, int* reduction) {
  if (reduction) *reduction = 1;
  if (!fs::exists(path)) fail("{}: no such image file", path.string());
  if (fs::file_size(path) == 0) fail("{}: empty image file", path.string());
  if (is_jpeg(path)) return decode_jpeg(path, min_side, reduction);
  if (is_png(path))
    if (auto png = decode_png(path)) return *png;  // else a kind our decoder leaves to OpenCV
  const cv::Mat raw = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  if (raw.empty()) fail("{}: cannot decode the image (truncated, or not PNG/JPEG)", path.string());
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
  if (!fs::exists(path)) fail("{}: no such image file", path.string());
  if (is_dicom_path(path)) return read_dicom(path, dicom).pixels;
  return mat_to_chw(read_image_mat(path));
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
