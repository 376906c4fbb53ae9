#include "train/visualize.h"

#include "core/error.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>

namespace facet::train {

Png image_grid_png(const torch::Tensor& images, int64_t max_images, int64_t columns) {
  if (images.dim() != 4) fail("image grid: expected [B, C, H, W], got {} dimensions", images.dim());
  const int64_t n = std::min(images.size(0), max_images), c = images.size(1), h = images.size(2), w = images.size(3);
  if (n <= 0) fail("image grid: no images");
  torch::Tensor x = images.narrow(0, 0, n).detach().to(torch::kCPU, torch::kFloat);
  x = c == 3 ? x : x.narrow(1, c / 2, 1);
  // Each tile to [0, 255] over its own range; a constant tile becomes mid-grey.
  const auto flat = x.flatten(1);
  const auto lo = std::get<0>(flat.min(1)).view({n, 1, 1, 1}), hi = std::get<0>(flat.max(1)).view({n, 1, 1, 1});
  x = torch::where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12) * 255.0, torch::full_like(x, 128.0));
  const int64_t cols = std::min(columns, n), rows = (n + cols - 1) / cols, pad = 2;
  const int64_t channels = x.size(1);
  torch::Tensor grid = torch::zeros({channels, rows * (h + pad) + pad, cols * (w + pad) + pad});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, col = i % cols;
    grid.narrow(1, pad + r * (h + pad), h).narrow(2, pad + col * (w + pad), w).copy_(x[i]);
  }
  // OpenCV wants interleaved BGR.
  torch::Tensor hwc = grid.round().clamp(0, 255).to(torch::kUInt8);
  if (channels == 3) hwc = hwc.flip({0});
  hwc = hwc.permute({1, 2, 0}).contiguous();
  const cv::Mat mat(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), channels == 3 ? CV_8UC3 : CV_8UC1,
                    hwc.data_ptr<uint8_t>());
  std::vector<uchar> encoded;
  if (!cv::imencode(".png", mat, encoded)) fail("image grid: PNG encoding failed");
  return {std::string(encoded.begin(), encoded.end()), mat.rows, mat.cols, static_cast<int>(channels)};
}

}  // namespace facet::train
