#include "data/image/mirror.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace facet::data::image {
namespace {

void mirror_row_portable(const uint8_t* src, uint8_t* dst, int64_t from, int64_t cols, int64_t channels) {
  for (int64_t i = from; i < cols; ++i) std::memcpy(dst + i * channels, src + (cols - 1 - i) * channels, channels);
}

#if defined(__x86_64__)
bool cpu_has_ssse3() {
  static const bool has = __builtin_cpu_supports("ssse3");
  return has;
}

// One RGB row, five pixels per step: a 16-byte load ending at the last byte of the five (one byte
// before them, so it never reads past the row), a shuffle reversing their order, a 16-byte store
// whose spare byte the next step overwrites. The steps stop before a store would pass the row's end.
__attribute__((target("ssse3"))) int64_t mirror_rgb_row_ssse3(const uint8_t* src, uint8_t* dst, int64_t cols) {
  const __m128i reverse = _mm_setr_epi8(13, 14, 15, 10, 11, 12, 7, 8, 9, 4, 5, 6, 1, 2, 3, -1);
  int64_t i = 0;
  for (; i + 6 <= cols; i += 5) {  // loads from pixel cols - 5 - i, one byte early: needs cols - 5 - i >= 1
    const __m128i five = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * (cols - 5 - i) - 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 3 * i), _mm_shuffle_epi8(five, reverse));
  }
  return i;
}
#endif

}  // namespace

void mirror_rows(const PixelsView& in, uint8_t* out) {
  const int64_t row_bytes = in.cols * in.channels;
  for (int64_t r = 0; r < in.rows; ++r) {
    const uint8_t* src = in.data + r * in.row_stride;
    uint8_t* dst = out + r * row_bytes;
    int64_t done = 0;
#if defined(__x86_64__)
    if (in.channels == 3 && cpu_has_ssse3()) done = mirror_rgb_row_ssse3(src, dst, in.cols);
#endif
    mirror_row_portable(src, dst, done, in.cols, in.channels);
  }
}

}  // namespace facet::data::image
