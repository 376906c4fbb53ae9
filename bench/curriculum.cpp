// The extra cost of Mo-SCL per training step (issue 15 item 8): a small Faster R-CNN (a three-conv
// stride-4 backbone with channel dropout) on a synthetic DeepLesion, trained through the Trainer with
// random order, Mo-SCL with the loss-fluctuation uncertainty, and Mo-SCL with MC-dropout passes
// (the mc_dropout hook); milliseconds per step and the ratios to random order. Also the sampler's
// own bookkeeping at DeepLesion's size (22,919 training key slices): one step's feedback and one
// epoch's order. One JSON line.
//   curriculum_bench [--steps 30] [--size 96] [--passes 8] [--every 1] [--rounds 3] [--threads N] [--device cpu|cuda]
#include "core/config.h"
#include "curriculum/samplers.h"
#include "data/synth.h"
#include "models/backbones/backbone.h"
#include "train/trainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
using namespace facet;

class BenchBackbone : public models::Backbone {
 public:
  BenchBackbone(int64_t in_channels, int64_t channels, double p) : channels_(channels) {
    namespace nn = torch::nn;
    net_ = register_module("net", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in_channels, 16, 3).stride(2).padding(1)), nn::ReLU(true),
                                                 nn::Conv2d(nn::Conv2dOptions(16, channels, 3).stride(2).padding(1)),
                                                 nn::BatchNorm2d(channels), nn::ReLU(true), nn::Dropout2d(p),
                                                 nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)), nn::ReLU(true)));
  }
  std::vector<models::FeatureInfo> feature_info() const override { return {{"c4", 4, channels_}}; }
  TensorDict forward_features(const torch::Tensor& images) override { return {{"c4", net_->forward(images)}}; }

 private:
  int64_t channels_;
  torch::nn::Sequential net_{nullptr};
};

FACET_REGISTER(models::backbone_registry(), "bench_tiny_stride4_dropout", "Bench: three convs, BatchNorm, channel dropout",
               [](const Config& c) {
                 return std::make_shared<BenchBackbone>(c.get<int64_t>("in_channels", 3), c.get<int64_t>("channels", 32), 0.1);
               });

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 30, size = 96, passes = 8, every = 1, threads = 0, rounds = 3;
  std::string device = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--passes") passes = std::stoll(value);
    else if (flag == "--every") every = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--rounds") rounds = std::max<int64_t>(1, std::stoll(value));
    else if (flag == "--device") device = value;
    else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  try {
    const fs::path root = fs::temp_directory_path() / fmt::format("facet_curriculum_bench_{}", ::getpid());
    fs::remove_all(root);
    data::synth_registry().create(Config::parse(fmt::format("{{name: deeplesion, patients: 12, slices: 10, size: {}, seed: 2}}", size)),
                                  root / "data");
    const auto config = [&](const std::string& sampler, const std::string& hooks, int64_t n) {
      return Config::parse(fmt::format(R"(
experiment: curriculum_bench
seed: 1
data:
  name: deeplesion
  root: {}
  num_slices: 3
  transforms: [{{name: ct_window, preset: mediastinum}}]
  batch_size: 2
  workers: 1
  sampler: {}
model:
  name: faster_rcnn
  backbone: {{name: bench_tiny_stride4_dropout, in_channels: 3}}
  rpn: {{feat_channels: 32, pre_nms_train: 2000, post_nms_train: 500, pre_nms_test: 1000, post_nms_test: 100}}
  roi: {{fc: 64}}
step: {{name: model_losses}}
optim: {{name: adam, lr: 1.0e-3}}
train: {{max_steps: {}, eval_every: 0, log_every: 100000, checkpoint_every: 100000, threads: {}, device: {}}}
hooks: {}
)",
                                       (root / "data").string(), sampler, n, threads, device, hooks));
    };
    const std::string mc_hook = fmt::format("[{{name: mc_dropout, passes: {}, every: {}}}]", passes, every);
    struct Mode {
      std::string label, sampler, hooks;
    };
    const std::vector<Mode> modes = {{"random", "{name: random}", "[]"},
                                     {"mo_scl_loss_std", "{name: mo_scl}", "[]"},
                                     {"mo_scl_mc_dropout", "{name: mo_scl, difficulty: {uncertainty: mc_dropout}}", mc_hook}};
    // Round 0 warms up (allocator, thread pools, page cache); then `rounds` rounds with the modes
    // interleaved, each mode's median kept (the machine may be shared).
    std::map<std::string, std::vector<double>> times;
    for (int64_t round = 0; round <= rounds; ++round)
      for (const auto& m : modes) {
        train::Trainer t(config(m.sampler, m.hooks, round == 0 ? 3 : steps), root / fmt::format("run_{}", m.label), train::Mode::train);
        const auto start = std::chrono::steady_clock::now();
        t.fit();
        if (round > 0) times[m.label].push_back(1000 * seconds_since(start) / static_cast<double>(steps));
        fs::remove_all(root / fmt::format("run_{}", m.label));
      }
    std::map<std::string, double> ms;
    for (auto& [label, v] : times) {
      std::sort(v.begin(), v.end());
      ms[label] = v[v.size() / 2];
    }
    // The sampler alone at DeepLesion's size: one step's feedback (2 images) and one epoch's order.
    const int64_t n = 22919;
    auto sampler = data::sampler_registry().create(Config::parse("{name: mo_scl}"), n, 0);
    sampler->set_batch_size(2);
    auto g = at::make_generator<at::CPUGeneratorImpl>(3);
    for (int v = 0; v < 3; ++v) sampler->feedback(torch::arange(n, torch::kLong), torch::rand({n}, g, torch::kDouble));
    auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < 1000; ++k) sampler->feedback(torch::tensor({k, k + 1}, torch::kLong), torch::rand({2}, g, torch::kDouble));
    const double feedback_us = 1e6 * seconds_since(start) / 1000;
    start = std::chrono::steady_clock::now();
    const auto order = sampler->epoch_order(4);
    const double order_ms = 1000 * seconds_since(start);
    start = std::chrono::steady_clock::now();
    const auto state = sampler->state().dump();
    const double state_ms = 1000 * seconds_since(start);
    fs::remove_all(root);
    fmt::print(
        "{{\"device\": \"{}\", \"rounds\": {}, \"steps\": {}, \"size\": {}, \"passes\": {}, \"every\": {}, \"ms_per_step\": {{\"random\": {:.2f}, "
        "\"mo_scl_loss_std\": {:.2f}, \"mo_scl_mc_dropout\": {:.2f}}}, \"ratio_loss_std\": {:.3f}, \"ratio_mc_dropout\": {:.3f}, "
        "\"deeplesion_size\": {{\"feedback_us_per_step\": {:.1f}, \"epoch_order_ms\": {:.1f}, \"state_json_ms\": {:.1f}, "
        "\"state_json_mb\": {:.2f}, \"epoch_order_per_step_us\": {:.3f}}}}}\n",
        device, rounds, steps, size, passes, every, ms["random"], ms["mo_scl_loss_std"], ms["mo_scl_mc_dropout"],
        ms["mo_scl_loss_std"] / ms["random"], ms["mo_scl_mc_dropout"] / ms["random"], feedback_us, order_ms, state_ms,
        static_cast<double>(state.size()) / 1e6, 1000 * order_ms / static_cast<double>(order.size() / 2));
  } catch (const std::exception& e) {
    fmt::print(stderr, "curriculum_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
