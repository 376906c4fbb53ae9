#include "data/image/resample.h"

#include "core/error.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace facet::data::image {
namespace {

// ATen's HelperInterpLinear::aa_filter.
double tent(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

uint8_t to_byte(int32_t sum, unsigned precision) { return static_cast<uint8_t>(std::clamp(sum >> precision, 0, 255)); }

// Tables of the sizes this thread resized last, `make()` on a miss: a loader's worker resizes every
// frame to one size. One cache per call site (the lambda's type).
template <class Tables, class Make>
std::shared_ptr<const Tables> recent_tables(int64_t in_size, int64_t out_size, Make make) {
  thread_local std::vector<std::tuple<int64_t, int64_t, std::shared_ptr<const Tables>>> recent;
  for (const auto& [in, out, tables] : recent)
    if (in == in_size && out == out_size) return tables;
  if (recent.size() == 8) recent.erase(recent.begin());
  recent.emplace_back(in_size, out_size, make());
  return std::get<2>(recent.back());
}

std::shared_ptr<const AxisWeights> axis_weights(int64_t in_size, int64_t out_size) {
  return recent_tables<AxisWeights>(
      in_size, out_size, [&] { return std::make_shared<const AxisWeights>(AxisWeights::make(in_size, out_size)); });
}

// The kernels a resize runs, resolved from ResampleKernels and the CPU; each level has the ones below.
enum class Level { portable, avx2, avx512_vbmi };

// ---- portable passes: the sums ATen's scalar loops compute (basic_loop_aa_horizontal / _vertical<uint8_t>)

// The part of a pass's output it computes: rows [row_begin, row_end) (input rows for the horizontal
// pass, output rows for the vertical one) and output columns [col_begin, col_end).
struct Span {
  int64_t row_begin, row_end, col_begin, col_end;
};

void horizontal_portable(const PixelsView& in, const AxisWeights& axis, const Span& span, uint8_t* out,
                         int64_t out_stride) {
  const int64_t channels = in.channels;
  const int32_t half = 1 << (axis.precision - 1);
  for (int64_t r = span.row_begin; r < span.row_end; ++r) {
    const uint8_t* src = in.data + r * in.row_stride;
    uint8_t* dst = out + r * out_stride;
    for (int64_t x = span.col_begin; x < span.col_end; ++x) {
      const int16_t* w = &axis.weights[x * axis.taps];
      const uint8_t* p = src + axis.first[x] * channels;
      for (int64_t c = 0; c < channels; ++c) {
        int32_t sum = half;
        for (int32_t k = 0; k < axis.count[x]; ++k) sum += p[k * channels + c] * w[k];
        dst[x * channels + c] = to_byte(sum, axis.precision);
      }
    }
  }
}

void vertical_portable(const PixelsView& in, const AxisWeights& axis, const Span& span, uint8_t* out,
                       int64_t out_stride) {
  const int32_t half = 1 << (axis.precision - 1);
  for (int64_t y = span.row_begin; y < span.row_end; ++y) {
    const int16_t* w = &axis.weights[y * axis.taps];
    const uint8_t* src = in.data + axis.first[y] * in.row_stride;
    uint8_t* dst = out + y * out_stride;
    for (int64_t b = span.col_begin * in.channels; b < span.col_end * in.channels; ++b) {
      int32_t sum = half;
      for (int32_t k = 0; k < axis.count[y]; ++k) sum += src[k * in.row_stride + b] * w[k];
      dst[b] = to_byte(sum, axis.precision);
    }
  }
}

#if defined(__x86_64__)
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// Weights k and k + 1 side by side in every 32-bit lane, as _mm256_madd_epi16 pairs them with two
// int16 values: one broadcast load (little-endian, k in the low half).
__attribute__((target("avx2"))) __m256i weight_pair(const int16_t* w) {
  int32_t pair;
  std::memcpy(&pair, w, sizeof pair);
  return _mm256_set1_epi32(pair);
}

// The 16 bytes at `low` and at `high` in the two halves of one register.
__attribute__((target("avx2"))) __m256i two_rows(const uint8_t* low, const uint8_t* high) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(low))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(high)), 1);
}

// The tables of one axis as plain pointers: the kernels' stores of uint8_t may alias anything, so
// reading them through the vectors would reload the vectors' data pointers after every store.
struct AxisTables {
  const int32_t* first;
  const int32_t* count;
  const int16_t* weights;
  int64_t taps;
  unsigned precision;
  explicit AxisTables(const AxisWeights& axis)
      : first(axis.first.data()),
        count(axis.count.data()),
        weights(axis.weights.data()),
        taps(axis.taps),
        precision(axis.precision) {}
};

// Output pixel x of two RGB rows: sums [R, G, B, 0] per 128-bit lane, row `low` in the low lane.
// One 16-byte load holds the five pixels from the output's first input; two byte shuffles spread taps
// 0-1 and 2-3 of each channel into int16 pairs, and madd weighs each pair. With FourTaps (no output
// reads more than four inputs) that is all of it, without the loop.
template <bool FourTaps>
__attribute__((target("avx2"), always_inline)) inline __m256i rgb_sums(const uint8_t* low, const uint8_t* high,
                                                                       const AxisTables& axis, int64_t x,
                                                                       __m256i half) {
  const __m256i taps01 = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,  //
                                          0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m256i taps23 = _mm256_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,  //
                                          6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1);
  const int16_t* w = axis.weights + x * axis.taps;
  const int64_t first = 3 * static_cast<int64_t>(axis.first[x]);
  const int32_t count = FourTaps ? 4 : axis.count[x];
  __m256i sums = half;
  for (int32_t k = 0; k < count; k += 4) {
    const int64_t at = first + 3 * k;
    const __m256i pixels = two_rows(low + at, high + at);
    sums = _mm256_add_epi32(sums, _mm256_madd_epi16(_mm256_shuffle_epi8(pixels, taps01), weight_pair(w + k)));
    sums = _mm256_add_epi32(sums, _mm256_madd_epi16(_mm256_shuffle_epi8(pixels, taps23), weight_pair(w + k + 2)));
  }
  return sums;
}

// Sums of four output pixels of two rows ([R, G, B, 0] per lane each) -> per lane, their 12 rounded
// bytes R G B R G B ... and 4 spare ones.
__attribute__((target("avx2"))) __m256i twelve_bytes(const __m256i (&sums)[4], __m128i shift) {
  const __m256i compact = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,  //
                                           0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  const __m256i first = _mm256_packs_epi32(_mm256_sra_epi32(sums[0], shift), _mm256_sra_epi32(sums[1], shift));
  const __m256i last = _mm256_packs_epi32(_mm256_sra_epi32(sums[2], shift), _mm256_sra_epi32(sums[3], shift));
  return _mm256_shuffle_epi8(_mm256_packus_epi16(first, last), compact);
}

// One output pixel of two rows -> its three rounded bytes at the start of each lane.
__attribute__((target("avx2"))) __m256i three_bytes(__m256i sums, __m128i shift) {
  sums = _mm256_packs_epi32(_mm256_sra_epi32(sums, shift), sums);
  return _mm256_packus_epi16(sums, sums);
}

__attribute__((target("avx2"))) void store_rgb(uint8_t* dst, __m128i bytes) {
  const int32_t rgb = _mm_cvtsi128_si32(bytes);
  std::memcpy(dst, &rgb, 3);
}

// Horizontal pass of interleaved RGB, two rows at a time (one per 128-bit lane, sharing the weights),
// four output pixels packed and stored together: 16-byte stores whose 4 spare bytes the next pixels
// overwrite, the span's last pixels one by one. A load reads up to 13 bytes past a row's last pixel,
// so the caller leaves the image's last row (and a row that does not make a pair) to the portable loop.
// Returns the end of the rows done.
template <bool FourTaps>
__attribute__((target("avx2"))) int64_t horizontal_rgb_avx2(const PixelsView& in, const AxisTables& axis,
                                                            const Span& span, uint8_t* out, int64_t out_stride) {
  const __m256i half = _mm256_set1_epi32(1 << (axis.precision - 1));
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(axis.precision));
  const int64_t rows = std::min(span.row_end, in.rows - 1);  // the last row stays with the portable loop
  int64_t r = span.row_begin;
  for (; r + 2 <= rows; r += 2) {
    const uint8_t* low = in.data + r * in.row_stride;
    const uint8_t* high = low + in.row_stride;
    uint8_t* d0 = out + r * out_stride;
    uint8_t* d1 = d0 + out_stride;
    int64_t x = span.col_begin;
    for (; 3 * x + 16 <= 3 * span.col_end; x += 4) {  // the 16-byte stores stay inside the span
      const __m256i sums[4] = {
          rgb_sums<FourTaps>(low, high, axis, x, half), rgb_sums<FourTaps>(low, high, axis, x + 1, half),
          rgb_sums<FourTaps>(low, high, axis, x + 2, half), rgb_sums<FourTaps>(low, high, axis, x + 3, half)};
      const __m256i bytes = twelve_bytes(sums, shift);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d0 + 3 * x), _mm256_castsi256_si128(bytes));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d1 + 3 * x), _mm256_extracti128_si256(bytes, 1));
    }
    for (; x < span.col_end; ++x) {
      const __m256i bytes = three_bytes(rgb_sums<FourTaps>(low, high, axis, x, half), shift);
      store_rgb(d0 + 3 * x, _mm256_castsi256_si128(bytes));
      store_rgb(d1 + 3 * x, _mm256_extracti128_si256(bytes, 1));
    }
  }
  return r;
}

// Vertical pass, 32 bytes of a row at a time whatever the channels: the bytes of two input rows are
// interleaved into int16 pairs and weighed by madd. The unpacks work within 128-bit lanes and the packs
// undo them in the same order, so the bytes come back where they were. Needs spans of >= 32 bytes; the
// last block overlaps the one before it.
__attribute__((target("avx2"))) void vertical_avx2(const PixelsView& in, const AxisWeights& axis, const Span& span,
                                                   uint8_t* out, int64_t out_stride) {
  const int64_t begin = span.col_begin * in.channels, end = span.col_end * in.channels;
  const __m256i half = _mm256_set1_epi32(1 << (axis.precision - 1));
  const __m256i zero = _mm256_setzero_si256();
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(axis.precision));
  for (int64_t y = span.row_begin; y < span.row_end; ++y) {
    const int16_t* w = &axis.weights[y * axis.taps];
    const uint8_t* src = in.data + axis.first[y] * in.row_stride;
    const int32_t count = axis.count[y];
    uint8_t* dst = out + y * out_stride;
    for (int64_t b = begin;; b += 32) {
      b = std::min(b, end - 32);
      __m256i sum0 = half, sum1 = half, sum2 = half, sum3 = half;
      for (int32_t k = 0; k < count; k += 2) {
        const __m256i upper = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k * in.row_stride + b));
        const __m256i lower = k + 1 < count
                                  ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + (k + 1) * in.row_stride + b))
                                  : zero;  // weights past `count` are zero
        const __m256i pair = weight_pair(w + k);
        const __m256i low = _mm256_unpacklo_epi8(upper, lower), high = _mm256_unpackhi_epi8(upper, lower);
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(_mm256_unpacklo_epi8(low, zero), pair));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(_mm256_unpackhi_epi8(low, zero), pair));
        sum2 = _mm256_add_epi32(sum2, _mm256_madd_epi16(_mm256_unpacklo_epi8(high, zero), pair));
        sum3 = _mm256_add_epi32(sum3, _mm256_madd_epi16(_mm256_unpackhi_epi8(high, zero), pair));
      }
      const __m256i first16 = _mm256_packs_epi32(_mm256_sra_epi32(sum0, shift), _mm256_sra_epi32(sum1, shift));
      const __m256i last16 = _mm256_packs_epi32(_mm256_sra_epi32(sum2, shift), _mm256_sra_epi32(sum3, shift));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b), _mm256_packus_epi16(first16, last16));
      if (b + 32 >= end) break;
    }
  }
}
#endif

// ---- the horizontal pass of RGB with AVX-512 VBMI, sixteen outputs (48 bytes) of a row at a time
#if defined(__x86_64__)

// Per group of 16 outputs: the first input pixel its 128-byte window starts at, and for each 16 of its
// bytes (one output channel each) the byte permutes that pick taps 0-1 and 2-3 out of the window as
// int16 pairs, with their weights. Made where no output reads more than four inputs (taps == 4) and a
// group's inputs lie within 42 pixels (126 bytes): any downscale up to 1.5x, and every upscale.
struct RgbGroups {
  static constexpr int64_t width = 16;  // outputs per group
  std::vector<int64_t> first;                     // [groups]
  std::vector<std::array<uint8_t, 64>> permutes;  // [groups * 6]: bytes 0-15, 16-31, 32-47; taps 0-1, 2-3
  std::vector<std::array<int16_t, 32>> weights;   // [groups * 6], alongside

  static std::shared_ptr<const RgbGroups> make(const AxisWeights& axis) {
    if (axis.taps != 4) return nullptr;
    auto g = std::make_shared<RgbGroups>();
    const int64_t groups = (axis.out_size + width - 1) / width;
    g->first.resize(groups);
    g->permutes.assign(groups * 6, {});
    g->weights.assign(groups * 6, {});
    for (int64_t group = 0; group < groups; ++group) {
      g->first[group] = axis.first[group * width];  // the firsts never decrease
      for (int64_t byte = 0; byte < 3 * width; ++byte) {
        const int64_t x = group * width + byte / 3, channel = byte % 3;
        if (x >= axis.out_size) break;
        for (int64_t tap = 0; tap < axis.count[x]; ++tap) {
          const int64_t block = group * 6 + byte / 16 * 2 + tap / 2, lane = 2 * (byte % 16) + tap % 2;
          const int64_t at = 3 * (axis.first[x] + tap - g->first[group]) + channel;
          if (at >= 128) return nullptr;
          g->permutes[block][2 * lane] = static_cast<uint8_t>(at);  // the odd bytes are zeroed: int16 values
          g->weights[block][lane] = axis.weights[x * axis.taps + tap];
        }
      }
    }
    return g;
  }
};

// Null where the kernel does not apply.
std::shared_ptr<const RgbGroups> rgb_groups(const AxisWeights& axis) {
  return recent_tables<RgbGroups>(axis.in_size, axis.out_size, [&] { return RgbGroups::make(axis); });
}

bool cpu_has_avx512_vbmi() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni");
  return has;
}

// The first n of 64 bytes.
__mmask64 first_bytes(int64_t n) { return n <= 0 ? 0 : n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// One group of a row: its 128-byte window in two masked loads (nothing read past the row), six two-register
// byte permutes (one per 16 int16 pairs, where the AVX2 kernel shuffles 3 pairs per instruction), six
// dot products with the group's weights, the packs to bytes and one permute back to output order, and
// a store masked to the span's columns. Bitwise the AVX2 and portable passes: the same integer sums.
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"), always_inline)) inline void vbmi_group(
    const uint8_t* row, uint8_t* dst, int64_t at, int64_t row_bytes, const __m512i (&permutes)[6],
    const __m512i (&weights)[6], __m512i half, __m128i shift, __m512i order, __mmask64 store) {
  const __mmask64 low_bytes = 0x5555555555555555;  // the low byte of each int16
  // (The maskz forms with every lane set: GCC 12's plain ones read an "uninitialized" source and warn.)
  const __mmask16 all = 0xFFFF;
  const __m512i low = _mm512_maskz_loadu_epi8(first_bytes(row_bytes - at), row + at);
  const __m512i high = _mm512_maskz_loadu_epi8(first_bytes(row_bytes - at - 64), row + at + 64);
  __m512i sums[3];
  for (int b = 0; b < 3; ++b) {
    __m512i sum = half;
    for (int t = 0; t < 2; ++t)
      sum = _mm512_dpwssd_epi32(sum, _mm512_maskz_permutex2var_epi8(low_bytes, low, permutes[2 * b + t], high),
                                weights[2 * b + t]);
    sums[b] = _mm512_maskz_sra_epi32(all, sum, shift);
  }
  const __m512i packed =
      _mm512_packus_epi16(_mm512_packs_epi32(sums[0], sums[1]), _mm512_packs_epi32(sums[2], sums[2]));
  _mm512_mask_storeu_epi8(dst, store, _mm512_maskz_permutexvar_epi8(~__mmask64{0}, order, packed));
}

// Group by group, down every row of the span with the group's permutes and weights held in registers
// (row by row, reloading them for each group, was 1.7x slower).
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"))) void horizontal_rgb_vbmi(
    const PixelsView& in, const AxisWeights& axis, const RgbGroups& groups, const Span& span, uint8_t* out,
    int64_t out_stride) {
  const __m512i half = _mm512_set1_epi32(1 << (axis.precision - 1));
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(axis.precision));
  // The packs leave sum i of block b at byte 16 * (i / 4) + 4 * b + i % 4 (they work within 128-bit lanes).
  alignas(64) uint8_t order_bytes[64] = {};
  for (int j = 0; j < 48; ++j) order_bytes[j] = static_cast<uint8_t>(16 * (j % 16 / 4) + 4 * (j / 16) + j % 4);
  const __m512i order = _mm512_load_si512(order_bytes);
  const int64_t row_bytes = in.cols * 3, width = RgbGroups::width;
  const int64_t col_begin = span.col_begin, col_end = span.col_end;
  const uint8_t* data = in.data;
  const int64_t stride = in.row_stride;
  for (int64_t g = col_begin / width; g * width < col_end; ++g) {
    __m512i permutes[6], weights[6];
    for (int k = 0; k < 6; ++k) {
      permutes[k] = _mm512_loadu_si512(groups.permutes[g * 6 + k].data());
      weights[k] = _mm512_loadu_si512(groups.weights[g * 6 + k].data());
    }
    const int64_t at = 3 * groups.first[g];
    const int64_t from = std::max(g * width, col_begin) - g * width, to = std::min((g + 1) * width, col_end) - g * width;
    const __mmask64 store = first_bytes(3 * to) & ~first_bytes(3 * from);
    for (int64_t r = span.row_begin; r < span.row_end; ++r)
      vbmi_group(data + r * stride, out + r * out_stride + 3 * g * width, at, row_bytes, permutes, weights, half, shift,
                 order, store);
  }
}
#endif

void horizontal(const PixelsView& in, const AxisWeights& axis, Span span, uint8_t* out, int64_t out_stride,
                Level level) {
#if defined(__x86_64__)
  if (level == Level::avx512_vbmi && in.channels == 3)
    if (const auto groups = rgb_groups(axis)) return horizontal_rgb_vbmi(in, axis, *groups, span, out, out_stride);
  if (level >= Level::avx2 && in.channels == 3 && in.cols * 3 >= 16) {
    const AxisTables tables(axis);
    span.row_begin = axis.taps == 4 ? horizontal_rgb_avx2<true>(in, tables, span, out, out_stride)
                                    : horizontal_rgb_avx2<false>(in, tables, span, out, out_stride);
  }
#endif
  horizontal_portable(in, axis, span, out, out_stride);
}

void vertical(const PixelsView& in, const AxisWeights& axis, const Span& span, uint8_t* out, int64_t out_stride,
              Level level) {
#if defined(__x86_64__)
  if (level >= Level::avx2 && (span.col_end - span.col_begin) * in.channels >= 32)
    return vertical_avx2(in, axis, span, out, out_stride);
#endif
  vertical_portable(in, axis, span, out, out_stride);
}

}  // namespace

AxisWeights AxisWeights::make(int64_t in_size, int64_t out_size) {
  if (in_size <= 0 || out_size <= 0) fail("resize: sizes must be positive, got {} -> {}", in_size, out_size);
  AxisWeights axis;
  axis.in_size = in_size;
  axis.out_size = out_size;
  // The order of the double arithmetic below is ATen's (_compute_indices_min_size_weights_aa): the
  // weights are rounded to int16, so the last bit of a double can move a pixel by one grey level.
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double support = scale >= 1.0 ? scale : 1.0;  // the tent's half-width: 1, times the downscale
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  const int64_t max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  axis.first.resize(out_size);
  axis.count.resize(out_size);
  std::vector<double> weights(out_size * max_taps, 0.0);
  double largest = 0.0;
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t first = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    const int64_t count = std::clamp(std::min(static_cast<int64_t>(center + support + 0.5), in_size) - first,
                                     int64_t{0}, max_taps);
    double* w = &weights[i * max_taps];
    double total = 0.0;
    for (int64_t j = 0; j < count; ++j) {
      w[j] = tent((static_cast<double>(j + first) - center + 0.5) * invscale);
      total += w[j];
    }
    if (total != 0.0)
      for (int64_t j = 0; j < count; ++j) largest = std::max(largest, w[j] /= total);
    axis.first[i] = static_cast<int32_t>(first);
    axis.count[i] = static_cast<int32_t>(count);
  }
  for (axis.precision = 0; axis.precision < 22; ++axis.precision)
    if (static_cast<int>(0.5 + largest * (1 << (axis.precision + 1))) >= (1 << 15)) break;
  // Padded to a multiple of 4 past the widest output's inputs (with zeros), as the kernels read them.
  axis.taps = (std::max(*std::max_element(axis.count.begin(), axis.count.end()), 1) + 3) / 4 * 4;
  axis.weights.assign(out_size * axis.taps, 0);
  for (int64_t i = 0; i < out_size; ++i)
    for (int64_t j = 0; j < axis.count[i]; ++j) {
      const double v = weights[i * max_taps + j] * (1 << axis.precision);
      axis.weights[i * axis.taps + j] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
    }
  return axis;
}

void resize_antialiased(const PixelsView& in, uint8_t* out, int64_t out_rows, int64_t out_cols,
                        ResampleKernels kernels) {
  resize_antialiased(in, out, out_rows, out_cols, OutputWindow{0, 0, out_rows, out_cols}, kernels);
}

void resize_antialiased(const PixelsView& in, uint8_t* out, int64_t out_rows, int64_t out_cols,
                        const OutputWindow& window, ResampleKernels kernels) {
  if (in.rows <= 0 || in.cols <= 0 || in.channels <= 0 || out_rows <= 0 || out_cols <= 0)
    fail("resize: {}x{}x{} pixels to {}x{}: every size must be positive", in.rows, in.cols, in.channels, out_rows,
         out_cols);
  if (in.row_stride < in.cols * in.channels)
    fail("resize: a row stride of {} bytes is shorter than a row ({} bytes)", in.row_stride, in.cols * in.channels);
  if (window.top < 0 || window.left < 0 || window.rows <= 0 || window.cols <= 0 ||
      window.top + window.rows > out_rows || window.left + window.cols > out_cols)
    fail("resize: the window of {}x{} pixels at row {}, column {} is not inside the {}x{} output", window.rows,
         window.cols, window.top, window.left, out_rows, out_cols);
  const int64_t out_stride = out_cols * in.channels;
  const int64_t row_end = window.top + window.rows, col_end = window.left + window.cols;
  if (in.rows == out_rows && in.cols == out_cols) {
    for (int64_t r = window.top; r < row_end; ++r)
      std::memcpy(out + r * out_stride + window.left * in.channels,
                  in.data + r * in.row_stride + window.left * in.channels, window.cols * in.channels);
    return;
  }
  Level level = Level::portable;
#if defined(__x86_64__)
  if (kernels != ResampleKernels::portable && cpu_has_avx2()) level = Level::avx2;
  if (kernels == ResampleKernels::best && cpu_has_avx512_vbmi()) level = Level::avx512_vbmi;
#endif
  PixelsView rows = in;
  thread_local std::vector<uint8_t> between;  // the horizontal pass's rows, when a vertical one follows
  if (in.cols != out_cols) {
    uint8_t* dst = out;
    Span span{window.top, row_end, window.left, col_end};
    if (in.rows != out_rows) {
      // Only the input rows the window's output rows read, at their own row index.
      std::tie(span.row_begin, span.row_end) = input_span(in.rows, out_rows, window.top, row_end);
      between.resize(static_cast<size_t>(in.rows * out_stride));
      dst = between.data();
    }
    horizontal(in, *axis_weights(in.cols, out_cols), span, dst, out_stride, level);
    rows = PixelsView{dst, in.rows, out_cols, in.channels, out_stride};
  }
  if (in.rows != out_rows)
    vertical(rows, *axis_weights(in.rows, out_rows), Span{window.top, row_end, window.left, col_end}, out, out_stride,
             level);
}

std::pair<int64_t, int64_t> input_span(int64_t in_size, int64_t out_size, int64_t begin, int64_t end) {
  if (begin < 0 || end > out_size || begin >= end)
    fail("resize: outputs {}..{} are not a range of the {} outputs", begin, end, out_size);
  if (in_size == out_size) return {begin, end};
  const AxisWeights& axis = *axis_weights(in_size, out_size);
  int64_t first = in_size, last = 0;
  for (int64_t i = begin; i < end; ++i) {
    first = std::min<int64_t>(first, axis.first[i]);
    last = std::max<int64_t>(last, axis.first[i] + axis.count[i]);
  }
  return {first, last};
}

}  // namespace facet::data::image
