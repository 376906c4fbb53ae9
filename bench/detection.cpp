// Detection in Facet (ATen-composed ops, models/detection) next to torchvision (bench/detection.py,
// inputs drawn the same way, same sizes, threads and settings): NMS, RoIAlign forward + backward, and a training step of
// Faster R-CNN ResNet-50-FPN (torchvision's proposal settings, BatchNorm trained in both). One JSON line.
//   detection_bench --what nms|roi_align|faster_rcnn [--boxes 12000] [--rois 1024] [--batch 2] [--size 512]
//                   [--steps 5] [--warmup 2] [--threads N] [--device cpu|cuda]
#include "core/config.h"
#include "models/detection/ops.h"
#include "models/detection/two_stage.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <string>

namespace det = facet::models::detection;

// Clustered boxes in a size x size image (as proposals are), distinct scores.
std::pair<torch::Tensor, torch::Tensor> clustered_boxes(int64_t n, double size, const torch::Device& device) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(0);
  const auto centres = torch::rand({n / 20 + 1, 2}, g) * size;
  const auto c = centres.repeat_interleave(20, 0).narrow(0, 0, n) + torch::randn({n, 2}, g) * 8;
  const auto wh = 16 + torch::rand({n, 2}, g) * 64;
  return {torch::cat({c - wh / 2, c + wh / 2}, 1).to(device), torch::randperm(n, g).to(torch::kFloat).div(n).to(device)};
}

int main(int argc, char** argv) {
  std::string what = "nms", device_name = "cpu";
  int64_t boxes = 12000, rois = 1024, batch = 2, size = 512, steps = 5, warmup = 2, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--what") what = value;
    else if (flag == "--boxes") boxes = std::stoll(value);
    else if (flag == "--rois") rois = std::stoll(value);
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--warmup") warmup = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--device") device_name = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  const torch::Device device(device_name);
  torch::manual_seed(0);
  std::function<void()> step;
  std::shared_ptr<det::TwoStageDetector> model;
  std::unique_ptr<torch::optim::SGD> optimizer;
  facet::data::Batch b;
  torch::Tensor kept;
  if (what == "nms") {
    auto [bx, sc] = clustered_boxes(boxes, 800, device);
    step = [bx, sc, &kept] { kept = det::nms(bx, sc, 0.7); };
  } else if (what == "roi_align") {
    auto x = torch::randn({batch, 256, size / 4, size / 4}, device).requires_grad_(true);
    auto [bx, sc] = clustered_boxes(rois, static_cast<double>(size), device);
    const auto idx = torch::randint(0, batch, {rois, 1}, torch::TensorOptions().device(device)).to(torch::kFloat);
    const auto r = torch::cat({idx, bx}, 1);
    det::RoIAlignOptions o;
    o.spatial_scale = 0.25;
    o.sampling_ratio = 2;
    o.aligned = false;
    step = [x, r, o] {
      x.mutable_grad() = torch::Tensor();
      det::roi_align(x, r, o).sum().backward();
    };
  } else if (what == "faster_rcnn") {
    model = std::make_shared<det::TwoStageDetector>(det::TwoStageOptions::from(
        facet::Config::parse("{name: faster_rcnn, backbone: {name: resnet50}, fpn: {out_channels: 256}, num_classes: 1}"), false));
    model->to(device);
    model->train();
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    b.fields["image"] = torch::rand({batch, 3, size, size}, device);
    b.indices = torch::arange(batch);
    for (int64_t i = 0; i < batch; ++i) {
      b.ragged["boxes"].push_back(torch::tensor({50.f, 60.f, 150.f, 140.f, 200.f, 220.f, 260.f, 300.f, 300.f, 100.f, 420.f, 180.f}, device).view({3, 4}) *
                                  (static_cast<float>(size) / 512.f));
      b.ragged["box_labels"].push_back(torch::ones({3}, torch::TensorOptions().dtype(torch::kLong).device(device)));
    }
    step = [&] {
      optimizer->zero_grad();
      facet::Outputs out;
      model->forward_losses(b, out).total.backward();
      optimizer->step();
    };
  } else {
    fmt::print(stderr, "detection_bench: unknown --what {} (nms, roi_align, faster_rcnn)\n", what);
    return 2;
  }
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  sync();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  sync();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / static_cast<double>(steps);
  fmt::print("{{\"what\": \"{}\", \"ms_per_step\": {:.3f}, \"kept\": {}, \"threads\": {}}}\n", what, ms,
             kept.defined() ? kept.size(0) : -1, torch::get_num_threads());
  return 0;
}
