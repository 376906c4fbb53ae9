#include "data/image/png.h"

#include "core/error.h"
#include "core/file_io.h"

#include <libdeflate.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

namespace facet::data::image {
namespace {

constexpr std::array<uint8_t, 8> kSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
// Larger images are refused rather than allocated (a 16-bit RGBA frame of 2^28 pixels is 2 GiB).
constexpr uint64_t kMaxPixels = uint64_t{1} << 28;

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

uint8_t paeth(uint8_t a, uint8_t b, uint8_t c) {
  const int p = int{a} + int{b} - int{c}, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// PNG's five row filters (PNG spec §9), in place: `row` holds the filtered bytes, `prior` the
// previous row's reconstructed bytes (all zero for the first row), `bpp` the bytes per pixel.
bool unfilter(uint8_t type, uint8_t* row, const uint8_t* prior, size_t length, size_t bpp) {
  switch (type) {
    case 0: return true;
    case 1:
      for (size_t i = bpp; i < length; ++i) row[i] = static_cast<uint8_t>(row[i] + row[i - bpp]);
      return true;
    case 2:
      for (size_t i = 0; i < length; ++i) row[i] = static_cast<uint8_t>(row[i] + prior[i]);
      return true;
    case 3:
      for (size_t i = 0; i < length; ++i) {
        const unsigned left = i >= bpp ? row[i - bpp] : 0;
        row[i] = static_cast<uint8_t>(row[i] + ((left + prior[i]) >> 1));
      }
      return true;
    case 4:
      for (size_t i = 0; i < length; ++i) {
        const uint8_t left = i >= bpp ? row[i - bpp] : 0, corner = i >= bpp ? prior[i - bpp] : 0;
        row[i] = static_cast<uint8_t>(row[i] + paeth(left, prior[i], corner));
      }
      return true;
    default: return false;
  }
}

struct Decompressor {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  ~Decompressor() { libdeflate_free_decompressor(d); }
};

}  // namespace

bool is_png(std::string_view bytes) {
  return bytes.size() >= kSignature.size() && std::memcmp(bytes.data(), kSignature.data(), kSignature.size()) == 0;
}

std::optional<cv::Mat> decode_png(const std::filesystem::path& path) { return decode_png(path, read_file(path)); }

std::optional<cv::Mat> decode_png(const std::filesystem::path& path, std::string_view file) {
  const auto bad = [&](std::string_view why) -> std::optional<cv::Mat> {
    fail("{}: cannot decode the PNG ({})", path.string(), why);
  };
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(file.data()), file.size());
  if (!is_png(file)) return bad("no PNG signature");
  uint32_t width = 0, height = 0;
  uint8_t depth = 0, colour = 0;
  bool header = false, end = false;
  std::vector<uint8_t> idat;
  size_t at = kSignature.size();
  while (!end) {
    if (bytes.size() - at < 12) return bad("truncated chunk");
    const uint32_t length = big_endian(&bytes[at]);
    if (length > bytes.size() - at - 12) return bad("truncated chunk");
    const uint8_t* type = &bytes[at + 4];
    const uint8_t* data = type + 4;
    if (libdeflate_crc32(0, type, size_t{length} + 4) != big_endian(data + length)) return bad("chunk CRC mismatch");
    const std::string_view name(reinterpret_cast<const char*>(type), 4);
    if (!header && name != "IHDR") return bad("the first chunk is not IHDR");
    if (name == "IHDR") {
      if (header || length != 13) return bad("bad IHDR");
      header = true;
      width = big_endian(data);
      height = big_endian(data + 4);
      depth = data[8];
      colour = data[9];
      if (width == 0 || height == 0 || data[10] != 0 || data[11] != 0 || data[12] > 1) return bad("bad IHDR");
      if (uint64_t{width} * height > kMaxPixels) return bad("larger than 2^28 pixels");
      // Kinds left to OpenCV: palette, interlaced, fewer than 8 bits.
      if (colour == 3 || data[12] != 0 || (depth != 8 && depth != 16)) return std::nullopt;
      if (colour != 0 && colour != 2 && colour != 4 && colour != 6) return bad("bad colour type");
    } else if (name == "IDAT") {
      idat.insert(idat.end(), data, data + length);
    } else if (name == "IEND") {
      end = true;
    }
    at += size_t{length} + 12;
  }
  const size_t channels = colour == 0 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4;
  const size_t sample = depth / 8, bpp = channels * sample, stride = size_t{width} * bpp;
  const size_t expected = size_t{height} * (stride + 1);
  // Deflate expands at most ~1032:1, so a header promising more than the data can hold is damaged:
  // refused before allocating for it.
  if (expected / 1032 > idat.size() + 64) return bad("corrupt or truncated image data");
  std::vector<uint8_t> raw(expected);
  size_t produced = 0;
  static thread_local Decompressor inflater;
  if (!inflater.d) fail("{}: libdeflate: out of memory", path.string());
  if (libdeflate_zlib_decompress(inflater.d, idat.data(), idat.size(), raw.data(), raw.size(), &produced) !=
          LIBDEFLATE_SUCCESS ||
      produced != raw.size())
    return bad("corrupt or truncated image data");

  const int kept = channels >= 3 ? 3 : 1;
  cv::Mat out(static_cast<int>(height), static_cast<int>(width), CV_MAKETYPE(depth == 16 ? CV_16U : CV_8U, kept));
  std::vector<uint8_t> zeros(stride, 0);
  const uint8_t* prior = zeros.data();
  for (size_t y = 0; y < height; ++y) {
    uint8_t* row = &raw[y * (stride + 1)];
    if (!unfilter(row[0], row + 1, prior, stride, bpp)) return bad("bad row filter");
    prior = row + 1;
    auto* dst = out.ptr<uint8_t>(static_cast<int>(y));
    const uint8_t* src = row + 1;
    // Keep grey or RGB (alpha dropped), 16-bit samples from big-endian to host order.
    for (size_t x = 0; x < width; ++x, src += bpp)
      for (int c = 0; c < kept; ++c) {
        if (depth == 8) {
          *dst++ = src[c];
        } else {
          const uint16_t v = static_cast<uint16_t>((src[2 * c] << 8) | src[2 * c + 1]);
          std::memcpy(dst, &v, 2);
          dst += 2;
        }
      }
  }
  return out;
}

}  // namespace facet::data::image
