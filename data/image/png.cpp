#include "data/image/png.h"

#include "core/error.h"
#include "core/file_io.h"

#include <libdeflate.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

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
// previous row's reconstructed bytes (all zero for the first row), Bpp the bytes per pixel. The left
// neighbour's reconstructed bytes (and Paeth's upper-left ones) are carried in registers: reading them
// back from the row just written waits on store forwarding at every byte, which made the Sub filter
// 70 % of a DeepLesion slice's decode.
template <size_t Bpp>
bool unfilter(uint8_t type, uint8_t* row, const uint8_t* prior, size_t length) {
  std::array<uint8_t, Bpp> left{}, corner{};
  switch (type) {
    case 0: return true;
    case 1:
      for (size_t i = 0; i < length; i += Bpp)
        for (size_t k = 0; k < Bpp; ++k) row[i + k] = left[k] = static_cast<uint8_t>(row[i + k] + left[k]);
      return true;
    case 2:
      for (size_t i = 0; i < length; ++i) row[i] = static_cast<uint8_t>(row[i] + prior[i]);
      return true;
    case 3:
      for (size_t i = 0; i < length; i += Bpp)
        for (size_t k = 0; k < Bpp; ++k)
          row[i + k] = left[k] = static_cast<uint8_t>(row[i + k] + ((unsigned{left[k]} + prior[i + k]) >> 1));
      return true;
    case 4:
      for (size_t i = 0; i < length; i += Bpp)
        for (size_t k = 0; k < Bpp; ++k) {
          const uint8_t up = prior[i + k];
          row[i + k] = left[k] = static_cast<uint8_t>(row[i + k] + paeth(left[k], up, corner[k]));
          corner[k] = up;
        }
      return true;
    default: return false;
  }
}

using Unfilter = bool (*)(uint8_t type, uint8_t* row, const uint8_t* prior, size_t length);

// The row filters for a pixel of `bpp` bytes: 1-4 (8-bit grey .. RGBA), 6 or 8 (16-bit RGB, RGBA).
Unfilter unfilter_for(size_t bpp) {
  switch (bpp) {
    case 1: return unfilter<1>;
    case 2: return unfilter<2>;
    case 3: return unfilter<3>;
    case 4: return unfilter<4>;
    case 6: return unfilter<6>;
    default: return unfilter<8>;
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
  // Kept between files (a loader decodes slices of one size), up to 64 MiB a thread.
  thread_local std::vector<uint8_t> kept_buffer;
  std::vector<uint8_t> once;
  std::vector<uint8_t>& raw = expected <= (size_t{64} << 20) ? kept_buffer : once;
  raw.resize(expected);
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
  const Unfilter unfilter_row = unfilter_for(bpp);
  for (size_t y = 0; y < height; ++y) {
    uint8_t* row = &raw[y * (stride + 1)];
    if (!unfilter_row(row[0], row + 1, prior, stride)) return bad("bad row filter");
    prior = row + 1;
    auto* dst = out.ptr<uint8_t>(static_cast<int>(y));
    const uint8_t* src = row + 1;
    // Keep grey or RGB (alpha dropped), 16-bit samples from big-endian to host order.
    if (depth == 8 && static_cast<size_t>(kept) == channels) {
      std::memcpy(dst, src, stride);
    } else if (depth == 16 && static_cast<size_t>(kept) == channels) {
      auto* samples = reinterpret_cast<uint16_t*>(dst);  // cv::Mat rows of 16-bit samples are 2-aligned
      for (size_t i = 0; i < width * channels; ++i)
        samples[i] = static_cast<uint16_t>((src[2 * i] << 8) | src[2 * i + 1]);
    } else {
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
  }
  return out;
}

}  // namespace facet::data::image
