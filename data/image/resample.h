// Antialiased bilinear resizing of 8-bit interleaved pixels, bitwise what torch's
// interpolate(mode=bilinear, align_corners=false, antialias=true) gives for a uint8 image — the resize
// torchvision's Resize runs on tensors, so a model trained here sees the pixels it would see there.
// ATen recomputes its weight tables and allocates them as tensors on every call; here they are made
// once per (input, output) size and thread — a loader resizes every frame to one size — and the AVX2
// passes store four output pixels at a time (a 256 -> 200 RGB frame: 72 us against ATen's ~200).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace facet::data::image {

// 8-bit interleaved pixels: `rows` rows of `cols` pixels of `channels` bytes, row r at
// data + r * row_stride (>= cols * channels).
struct PixelsView {
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0, channels = 0, row_stride = 0;
};

// The integer weights of one axis, as ATen makes them for uint8 (UpSampleKernel.cpp,
// `_compute_index_ranges_int16_weights`): the tent filter widened by the downscale factor,
// normalised per output, then scaled by 2^precision and rounded to int16, the largest precision
// that keeps the largest weight below 2^15.
struct AxisWeights {
  int64_t in_size = 0, out_size = 0;
  int64_t taps = 0;            // weights stored per output: the largest count up to a multiple of 4
  unsigned precision = 0;      // the weighted sum is shifted right by this much, after adding half
  std::vector<int32_t> first;  // [out]: the first input index
  std::vector<int32_t> count;  // [out]: how many inputs it reads
  std::vector<int16_t> weights;  // [out, taps]

  static AxisWeights make(int64_t in_size, int64_t out_size);
};

// Which code runs: the fastest the CPU has (an AVX-512 VBMI horizontal pass of RGB, else AVX2), at most
// AVX2, or the portable loops. Every one gives the same bytes (the tests compare them).
enum class ResampleKernels { best, avx2, portable };

// Resizes `in` to out_rows x out_cols into `out` (contiguous, out_rows * out_cols * channels bytes): a
// horizontal pass rounded to 8 bits, then a vertical one, as ATen does. Any number of channels (the
// vector kernels: RGB for the horizontal pass, any for the vertical one).
void resize_antialiased(const PixelsView& in, uint8_t* out, int64_t out_rows, int64_t out_cols,
                        ResampleKernels kernels = ResampleKernels::best);

// Output rows [top, top + rows) and columns [left, left + cols).
struct OutputWindow {
  int64_t top = 0, left = 0, rows = 0, cols = 0;
};

// The same, computing only the pixels of `window` (the rest of `out` is left as it was) from only the
// input rows they read: for a reader that knows which crop of its image the loader keeps. Each pixel
// is the one the whole resize gives.
void resize_antialiased(const PixelsView& in, uint8_t* out, int64_t out_rows, int64_t out_cols,
                        const OutputWindow& window, ResampleKernels kernels = ResampleKernels::best);

// The inputs [first, end) that outputs [begin, end) of an in_size -> out_size resize read (along one
// axis): how much of an image a decoder must produce for a window of its resize.
std::pair<int64_t, int64_t> input_span(int64_t in_size, int64_t out_size, int64_t begin, int64_t end);

}  // namespace facet::data::image
