// Extra cost per training step of the bounding-map switches (models/detection/bounding_maps.h) over the
// plain detector, measured in one run: plain, +BM, +BMC (sampling + conditioned proposals), +BMC+ABM
// (Mask R-CNN with ABM mask targets, against a Mask R-CNN with ellipse targets as its own plain row).
// Steps of the variants are interleaved (round-robin) so that machine load hits them alike; the median
// step time of each is printed as a table with its ratio to the plain detector.
// The detector: Faster R-CNN ResNet-50-FPN with torchvision's heads (random weights).
//   bounding_maps_bench [--batch 2] [--size 512] [--steps 5] [--warmup 1] [--threads N] [--device cpu|cuda]
#include "core/config.h"
#include "models/detection/two_stage.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace det = facet::models::detection;

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int64_t batch = 2, size = 512, steps = 5, warmup = 1, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--warmup") warmup = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--device") device_name = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  const torch::Device device(device_name);
  struct Variant {
    std::string name, yaml;
    std::shared_ptr<det::TwoStageDetector> model;
    std::unique_ptr<torch::optim::SGD> optimizer;
    std::vector<double> ms;
  };
  const std::string base = "backbone: {name: resnet50}, fpn: {out_channels: 256}, num_classes: 1";
  std::vector<Variant> variants;
  variants.push_back({"plain", "{name: faster_rcnn, " + base + "}", nullptr, nullptr, {}});
  variants.push_back({"bm", "{name: faster_rcnn, " + base + ", rpn: {objectness: bm}}", nullptr, nullptr, {}});
  variants.push_back({"bmc", "{name: faster_rcnn, " + base + ", rpn: {objectness: bm, sampling: bmc, proposals: bm_conditioned}}", nullptr,
                      nullptr, {}});
  variants.push_back({"mask_plain", "{name: mask_rcnn, " + base + ", mask: {targets: boxes}}", nullptr, nullptr, {}});
  variants.push_back({"bmc_abm", "{name: mask_rcnn, " + base + ", rpn: {objectness: bm, sampling: bmc, proposals: bm_conditioned}, mask: {targets: abm}}",
                      nullptr, nullptr, {}});
  for (auto& v : variants) {
    torch::manual_seed(0);
    v.model = std::dynamic_pointer_cast<det::TwoStageDetector>(facet::models::model_registry().create(facet::Config::parse(v.yaml)));
    v.model->to(device);
    v.model->train();
    v.optimizer = std::make_unique<torch::optim::SGD>(v.model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  }
  torch::manual_seed(1);
  facet::data::Batch b;
  b.fields["image"] = torch::randn({batch, 3, size, size}, device);
  b.indices = torch::arange(batch);
  for (int64_t i = 0; i < batch; ++i) {  // 1..3 lesions of 10..80 px
    const int64_t n = 1 + i % 3;
    const auto wh = 10 + torch::rand({n, 2}) * 70, xy = torch::rand({n, 2}) * (static_cast<double>(size) - 90);
    b.ragged["boxes"].push_back(torch::cat({xy, xy + wh}, 1).to(device));
  }
  const auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int64_t s = 0; s < warmup + steps; ++s)
    for (auto& v : variants) {
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      facet::Outputs out;
      v.optimizer->zero_grad();
      v.model->forward_losses(b, out).total.backward();
      v.optimizer->step();
      sync();
      if (s >= warmup) v.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  fmt::print("Faster / Mask R-CNN ResNet-50-FPN training step, batch {} x {}², {} (median of {} interleaved steps)\n", batch, size,
             device_name, steps);
  fmt::print("{:<11} {:>10} {:>8}\n", "variant", "ms/step", "ratio");
  const double plain = median(variants[0].ms), mask_plain = median(variants[3].ms);
  for (const auto& v : variants) {
    const double ref = v.name == "bmc_abm" || v.name == "mask_plain" ? mask_plain : plain;
    fmt::print("{:<11} {:>10.1f} {:>8.3f}{}\n", v.name, median(v.ms), median(v.ms) / ref,
               v.name == "bmc_abm" ? "  (vs mask_plain)" : v.name == "mask_plain" ? "  (reference for bmc_abm)" : "");
  }
  return 0;
}
