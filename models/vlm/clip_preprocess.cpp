#include "models/vlm/clip_preprocess.h"

#include "core/error.h"

#include <cmath>

namespace facet::models::vlm {
namespace F = torch::nn::functional;

namespace {

// [3, H, W] uint8.
torch::Tensor to_rgb255(const torch::Tensor& image) {
  torch::Tensor chw;
  if (image.scalar_type() == torch::kByte) {
    if (image.dim() == 2) chw = image.unsqueeze(0);
    else if (image.dim() == 3 && (image.size(2) == 3 || image.size(2) == 1)) chw = image.permute({2, 0, 1});
    else fail("clip_preprocess: a uint8 image must be [H, W] or [H, W, 1|3], got {}", image.sizes());
  } else if (image.is_floating_point() && image.dim() == 3 && (image.size(0) == 3 || image.size(0) == 1)) {
    chw = (image.to(torch::kFloat32) * 255).round_().clamp_(0, 255).to(torch::kByte);
  } else {
    fail("clip_preprocess: expected uint8 [H, W(, C)] or float [C, H, W] in [0, 1], got {} {}", image.sizes(), std::string(c10::toString(image.scalar_type())));
  }
  return chw.size(0) == 1 ? chw.expand({3, -1, -1}).contiguous() : chw;
}

// On the 8-bit image itself: ATen's uint8 antialiased kernel (fixed-point) is what torchvision, and
// so CLIPImageProcessor, runs; resizing floats and rounding differs by one level at ~20% of pixels.
torch::Tensor resize(const torch::Tensor& chw, int64_t h, int64_t w) {
  if (chw.size(1) == h && chw.size(2) == w) return chw;
  auto out = F::interpolate(chw.unsqueeze(0), F::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{h, w})
                                                  .mode(torch::kBicubic)
                                                  .align_corners(false)
                                                  .antialias(true));
  return out.squeeze(0);
}

}  // namespace

torch::Tensor clip_preprocess(const torch::Tensor& image, const ClipPreprocessOptions& o) {
  if (o.size < 1 || o.crop_size < 1) fail("clip_preprocess: size and crop_size must be positive");
  auto x = to_rgb255(image);
  if (o.pad_to_square && x.size(1) != x.size(2)) {
    const int64_t h = x.size(1), w = x.size(2), side = std::max(h, w);
    auto square = torch::empty({3, side, side}, x.options());
    for (int64_t c = 0; c < 3; ++c) square[c].fill_(std::floor(o.mean[static_cast<size_t>(c)] * 255));
    square.slice(1, (side - h) / 2, (side - h) / 2 + h).slice(2, (side - w) / 2, (side - w) / 2 + w).copy_(x);
    x = square;
  }
  if (o.square_resize) {
    x = resize(x, o.size, o.size);
  } else {
    const int64_t h = x.size(1), w = x.size(2);
    const int64_t shorter = std::min(h, w), longer = std::max(h, w);
    const auto other = static_cast<int64_t>(static_cast<double>(o.size) * static_cast<double>(longer) / static_cast<double>(shorter));
    x = h <= w ? resize(x, o.size, other) : resize(x, other, o.size);
    const int64_t rh = x.size(1), rw = x.size(2);
    if (rh < o.crop_size || rw < o.crop_size) fail("clip_preprocess: the resized image {}x{} is smaller than the crop {}", rh, rw, o.crop_size);
    const auto top = static_cast<int64_t>(std::lround((rh - o.crop_size) / 2.0));
    const auto left = static_cast<int64_t>(std::lround((rw - o.crop_size) / 2.0));
    x = x.slice(1, top, top + o.crop_size).slice(2, left, left + o.crop_size);
  }
  const auto mean = torch::tensor({o.mean[0], o.mean[1], o.mean[2]}, torch::kFloat32).view({3, 1, 1});
  const auto std = torch::tensor({o.std[0], o.std[1], o.std[2]}, torch::kFloat32).view({3, 1, 1});
  return ((x.to(torch::kFloat32) / 255.0 - mean) / std).contiguous();
}

}  // namespace facet::models::vlm
