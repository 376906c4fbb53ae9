#include "data/transforms/eight_bit_normalize.h"

#include <ATen/Version.h>

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace facet::data {
namespace {

#if defined(__x86_64__)
// One row of an interleaved RGB view: pixel i at row + 3 * i, its channel c at offset c. Eight pixels
// are 24 bytes: two overlapping 16-byte loads, and per channel two byte shuffles pick its eight values.
__attribute__((target("avx2,fma"))) void interleaved_row(const uint8_t* row, int64_t width, float* const out[3],
                                                        const float* scale, const float* shift) {
  __m128i from_low[3], from_high[3];
  for (int c = 0; c < 3; ++c) {
    alignas(16) int8_t low[16], high[16];
    std::fill_n(low, 16, int8_t{-1});  // -1: a zero byte, the other load supplies it
    std::fill_n(high, 16, int8_t{-1});
    for (int k = 0; k < 8; ++k) {
      const int byte = 3 * k + c;  // within the 24 bytes of the eight pixels
      if (byte < 16) low[k] = static_cast<int8_t>(byte);
      else high[k] = static_cast<int8_t>(byte - 8);
    }
    from_low[c] = _mm_load_si128(reinterpret_cast<const __m128i*>(low));
    from_high[c] = _mm_load_si128(reinterpret_cast<const __m128i*>(high));
  }
  __m256 scales[3], shifts[3];
  for (int c = 0; c < 3; ++c) {
    scales[c] = _mm256_set1_ps(scale[c]);
    shifts[c] = _mm256_set1_ps(shift[c]);
  }
  bool stream = true;
  for (int c = 0; c < 3; ++c) stream = stream && reinterpret_cast<uintptr_t>(out[c]) % 32 == 0;
  int64_t i = 0;
  for (; i + 8 <= width; i += 8) {
    const uint8_t* pixels = row + 3 * i;
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pixels));
    const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pixels + 8));
    for (int c = 0; c < 3; ++c) {
      const __m128i bytes = _mm_or_si128(_mm_shuffle_epi8(low, from_low[c]), _mm_shuffle_epi8(high, from_high[c]));
      const __m256 values = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
      const __m256 result = _mm256_fmadd_ps(values, scales[c], shifts[c]);
      if (stream) _mm256_stream_ps(out[c] + i, result);
      else _mm256_storeu_ps(out[c] + i, result);
    }
  }
  for (; i < width; ++i)
    for (int c = 0; c < 3; ++c) out[c][i] = std::fma(static_cast<float>(row[3 * i + c]), scale[c], shift[c]);
}

// x * scale + shift with one rounding, as ATen's AVX2 / AVX-512 addcmul (its vector and scalar loops
// are both compiled with FMA contraction).
__attribute__((target("avx2,fma"))) void fused_affine(float* values, int64_t n, float scale, float shift) {
  const __m256 s = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(values + i, _mm256_fmadd_ps(_mm256_loadu_ps(values + i), s, b));
  for (; i < n; ++i)
    values[i] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(values[i]), _mm_set_ss(scale), _mm_set_ss(shift)));
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

}  // namespace

EightBitNormalize::EightBitNormalize(const torch::Tensor& scale, const torch::Tensor& shift)
    : table_(torch::addcmul(shift.view({-1, 1}), torch::arange(256, torch::kFloat).view({1, -1}), scale.view({-1, 1}))
                 .contiguous()) {
  const auto s = scale.to(torch::kFloat).contiguous(), b = shift.to(torch::kFloat).contiguous();
  scale_.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  shift_.assign(b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
  const std::string capability = at::get_cpu_capability();
#if defined(__x86_64__)
  fused_kernel_ = (capability == "AVX2" || capability == "AVX512") && cpu_has_avx2_fma();
#else
  fused_kernel_ = false;
#endif
}

void EightBitNormalize::map(float* values, int64_t n, int64_t channel) const {
  const size_t c = scale_.size() > 1 ? static_cast<size_t>(channel) : 0;
  const float scale = scale_[c], shift = shift_[c];
#if defined(__x86_64__)
  if (fused_kernel_) return fused_affine(values, n, scale, shift);
#endif
  for (int64_t i = 0; i < n; ++i) values[i] = shift + values[i] * scale;
}

void EightBitNormalize::operator()(const torch::Tensor& in, torch::Tensor& out) const {
  const int64_t channels = in.size(0), h = in.size(1), w = in.size(2);
  const int64_t sc = in.stride(0), sy = in.stride(1), sx = in.stride(2);
  const uint8_t* pixels = in.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  const bool per_channel = scale_.size() > 1;
#if defined(__x86_64__)
  if (fused_kernel_ && channels == 3 && sc == 1 && sx == 3) {
    float scale[3], shift[3];
    for (int c = 0; c < 3; ++c) {
      scale[c] = scale_[per_channel ? c : 0];
      shift[c] = shift_[per_channel ? c : 0];
    }
    for (int64_t y = 0; y < h; ++y) {
      float* const rows[3] = {o + y * w, o + (h + y) * w, o + (2 * h + y) * w};
      interleaved_row(pixels + y * sy, w, rows, scale, shift);
    }
    _mm_sfence();
    return;
  }
#endif
  for (int64_t c = 0; c < channels; ++c) {
    const float* value = table_.data_ptr<float>() + (per_channel ? 256 * c : 0);
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* row = pixels + c * sc + y * sy;
      float* dst = o + (c * h + y) * w;
      for (int64_t i = 0; i < w; ++i) dst[i] = value[row[i * sx]];
    }
  }
}

}  // namespace facet::data
