#include "data/image/jpeg.h"

#include "core/error.h"
#include "core/file_io.h"

#include <csetjmp>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

namespace facet::data::image {
namespace fs = std::filesystem;

namespace {

// libjpeg reports errors through error_exit, which must not return: jump back to decode().
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
  bool truncated = false;  // premature end of data: a warning for libjpeg, an error for us
};

void on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER)) e->truncated = true;
}

// The decode proper, free of objects with destructors between setjmp and longjmp: `out` and `rows`
// belong to the caller (a local vector's buffer would leak on an error's jump, found by fuzz_image).
bool decode(std::span<const unsigned char> bytes, int64_t min_side, cv::Mat& out, std::vector<JSAMPROW>& rows,
            int& reduction, ErrorManager& err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // A header may claim up to 65535 x 65535 pixels (12 GB of RGB): refused rather than allocated.
  if (uint64_t{cinfo.image_width} * cinfo.image_height > (uint64_t{1} << 28)) {
    std::snprintf(err.message, sizeof(err.message), "%ux%u pixels, more than 2^28", cinfo.image_width, cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  // The largest of libjpeg-turbo's SIMD-accelerated reductions (1/2, 1/4, 1/8) that keeps both
  // sides at least min_side and divides them (so coordinates scale exactly): the scaled inverse DCT
  // does the first averaging of the downscale.
  reduction = 1;
  const auto w = static_cast<int64_t>(cinfo.image_width), h = static_cast<int64_t>(cinfo.image_height);
  for (int denom = 8; min_side > 0 && denom > 1; denom /= 2)
    if (w % denom == 0 && h % denom == 0 && w / denom >= min_side && h / denom >= min_side) {
      cinfo.scale_num = 1;
      cinfo.scale_denom = static_cast<unsigned>(denom);
      reduction = denom;
      break;
    }
  jpeg_start_decompress(&cinfo);
  // libjpeg-turbo's SIMD colour conversion writes a row that starts on a 16- or 32-byte boundary with
  // non-temporal stores, past the cache: the reader's resize, next, would then read the whole image
  // back from memory (a 256-px frame's resize 67 us instead of 36). So every row starts one pixel
  // past a 32-byte boundary: rows of a multiple of 32 pixels, the image one pixel in.
  const int width = static_cast<int>(cinfo.output_width);
  out.create(static_cast<int>(cinfo.output_height), (width + 1 + 31) / 32 * 32,
             cinfo.output_components == 1 ? CV_8UC1 : CV_8UC3);
  out = out.colRange(1, 1 + width);
  // Rows in groups as large as the decoder's output buffer (an iMCU row), not one call per row.
  rows.resize(static_cast<size_t>(cinfo.output_height));
  for (JDIMENSION y = 0; y < cinfo.output_height; ++y) rows[y] = out.ptr<unsigned char>(static_cast<int>(y));
  while (cinfo.output_scanline < cinfo.output_height)
    jpeg_read_scanlines(&cinfo, rows.data() + cinfo.output_scanline, cinfo.output_height - cinfo.output_scanline);
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

cv::Mat decode_jpeg(const fs::path& path, int64_t min_side, int* reduction) {
  if (!fs::exists(path)) fail("{}: no such image file", path.string());
  return decode_jpeg(path, read_file(path), min_side, reduction);
}

cv::Mat decode_jpeg(const fs::path& path, std::string_view file, int64_t min_side, int* reduction) {
  const std::span<const unsigned char> bytes(reinterpret_cast<const unsigned char*>(file.data()), file.size());
  if (bytes.size() < 2 || bytes[0] != 0xFF || bytes[1] != 0xD8) fail("{}: not a JPEG file", path.string());
  ErrorManager err;
  cv::Mat out;
  std::vector<JSAMPROW> rows;
  int reduced = 1;
  if (reduction) *reduction = 1;
  if (!decode(bytes, min_side, out, rows, reduced, err)) fail("{}: cannot decode the JPEG ({})", path.string(), err.message);
  if (err.truncated) fail("{}: truncated JPEG (premature end of data)", path.string());
  if (out.channels() != 1 && out.channels() != 3) fail("{}: JPEG with {} components", path.string(), out.channels());
  if (reduction) *reduction = reduced;
  return out;
}

}  // namespace facet::data::image
