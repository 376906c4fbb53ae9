#include "train/visualize.h"

#include "core/error.h"
#include "train/caption.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

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

namespace {

// A tile as an 8-bit BGR image scaled to its own value range.
cv::Mat tile(const torch::Tensor& image, int side) {
  torch::Tensor x = image.detach().to(torch::kCPU, torch::kFloat);
  x = x.size(0) == 3 ? x : x.narrow(0, x.size(0) / 2, 1).expand({3, -1, -1});
  const float lo = x.min().item<float>(), hi = x.max().item<float>();
  x = hi > lo ? (x - lo) / (hi - lo) * 255.0 : torch::full_like(x, 128.0);
  const torch::Tensor hwc = x.round().clamp(0, 255).to(torch::kUInt8).flip({0}).permute({1, 2, 0}).contiguous();
  cv::Mat bgr(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3, hwc.data_ptr<uint8_t>());
  cv::Mat out;
  cv::resize(bgr, out, cv::Size(side, side * bgr.rows / std::max(1, bgr.cols)), 0, 0, cv::INTER_LINEAR);
  return out;
}

std::string short_name(const std::string& name) { return name.rfind("AU", 0) == 0 ? name.substr(2) : name; }

}  // namespace

Png labelled_grid_png(const torch::Tensor& images, const torch::Tensor& truth, const torch::Tensor& predicted,
                      const std::vector<std::string>& names, int64_t max_images, int64_t columns) {
  if (images.dim() != 4) fail("labelled grid: expected [B, C, H, W], got {} dimensions", images.dim());
  const int64_t n = std::min(images.size(0), max_images);
  if (n <= 0) fail("labelled grid: no images");
  const torch::Tensor t = truth.to(torch::kCPU, torch::kFloat), p = predicted.to(torch::kCPU, torch::kFloat);
  const int side = std::max<int>(160, static_cast<int>(images.size(3))), caption = 34, pad = 4;
  const int64_t cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  cv::Mat grid(static_cast<int>(rows) * (side + caption + pad) + pad, static_cast<int>(cols) * (side + pad) + pad, CV_8UC3,
               cv::Scalar(24, 24, 24));
  const cv::Scalar green(80, 200, 80), orange(0, 150, 255), red(60, 60, 230);
  for (int64_t i = 0; i < n; ++i) {
    const int x0 = pad + static_cast<int>(i % cols) * (side + pad), y0 = pad + static_cast<int>(i / cols) * (side + caption + pad);
    const cv::Mat face = tile(images[i], side);
    face.copyTo(grid(cv::Rect(x0, y0, face.cols, std::min(face.rows, side))));
    // Caption: "T: 1 2 6 12" (green: found, orange: missed), "FP: 4 7" (red).
    auto write = [&](int line, const std::string& head, const std::vector<std::pair<std::string, cv::Scalar>>& items) {
      put_caption(grid, x0 + 2, y0 + side + 13 + 15 * line, x0 + side - 2, head, items);
    };
    std::vector<std::pair<std::string, cv::Scalar>> truths, false_positives;
    for (int64_t l = 0; l < t.size(1); ++l) {
      const std::string name = short_name(l < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(l)] : std::to_string(l));
      const bool yes = t[i][l].item<float>() > 0.5, said = p[i][l].item<float>() > 0.5;
      if (yes) truths.emplace_back(name, said ? green : orange);
      else if (said && t[i][l].item<float>() >= 0) false_positives.emplace_back(name, red);
    }
    write(0, "T:", truths);
    write(1, "FP:", false_positives);
  }
  std::vector<uchar> encoded;
  if (!cv::imencode(".png", grid, encoded)) fail("labelled grid: PNG encoding failed");
  return {std::string(encoded.begin(), encoded.end()), grid.rows, grid.cols, 3};
}

}  // namespace facet::train
