#include "data/image/image_io.h"

#include "core/error.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <fstream>

namespace facet::data::image {
namespace fs = std::filesystem;

namespace {

// libjpeg decodes a truncated JPEG with only a warning, filling the rest grey; a complete file ends
// with the end-of-image marker FF D9 (a few trailing bytes after it are tolerated).
void check_jpeg_complete(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char head[2] = {};
  if (!in.read(reinterpret_cast<char*>(head), 2) || head[0] != 0xFF || head[1] != 0xD8) return;  // not a JPEG
  const auto size = static_cast<std::streamoff>(fs::file_size(path));
  const std::streamoff tail = std::min<std::streamoff>(size, 1024);
  std::string end(static_cast<size_t>(tail), '\0');
  in.seekg(size - tail);
  in.read(end.data(), tail);
  if (end.find("\xFF\xD9") == std::string::npos)
    fail("{}: truncated JPEG (no end-of-image marker)", path.string());
}

}  // namespace

bool is_dicom_path(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".dcm" || ext == ".dicom" || (ext.empty() && looks_like_dicom(path));
}

torch::Tensor read_image(const fs::path& path, const DicomReadOptions& dicom) {
  if (!fs::exists(path)) fail("{}: no such image file", path.string());
  if (is_dicom_path(path)) return read_dicom(path, dicom).pixels;
  if (fs::file_size(path) == 0) fail("{}: empty image file", path.string());
  check_jpeg_complete(path);
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
  cv::Mat f;
  rgb.convertTo(f, CV_32F);
  const int64_t c = f.channels();
  // clone: with one channel the permuted view is already "contiguous" and would still point into f.
  return torch::from_blob(f.data, {f.rows, f.cols, c}, torch::kFloat).permute({2, 0, 1}).clone(at::MemoryFormat::Contiguous);
}

}  // namespace facet::data::image
