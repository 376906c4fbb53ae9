// The extra cost per training step of every lesion-detection switch of issue 15 over the plain
// detector, measured in one run through the Trainer (so the curriculum sampler and the MC-dropout hook
// count): Faster R-CNN plain, +BM (soft objectness), +BMC (BM-conditioned anchor sampling and
// proposals), Mask R-CNN plain (box targets) and +BMC+ABM (ABM mask targets), and the plain Faster
// R-CNN with Mo-SCL (loss fluctuation) and Mo-SCL with MC-dropout passes. The detector is the small
// one the tests train (tests/support/synth_detector.h: a three-conv stride-4 backbone, here with
// BatchNorm and channel dropout so that MC dropout has something to sample) on a synthetic DeepLesion;
// `--backbone resnet50_fpn` uses torchvision's ResNet-50-FPN instead (no dropout: no MC-dropout row).
// Runs are interleaved round by round (the first round warms up) and each variant's median
// ms/step is kept. Also Mo-SCL's own bookkeeping at DeepLesion's size (22,919 training key slices).
// One JSON line.
//   lesion_switches_bench [--steps 30] [--size 96] [--passes 8] [--every 1] [--rounds 3] [--threads N]
//                         [--backbone tiny|resnet50_fpn] [--device cpu|cuda]
#include "core/config.h"
#include "core/text.h"
#include "curriculum/samplers.h"
#include "data/synth.h"
#include "models/backbones/backbone.h"
#include "tests/support/synth_detector.h"
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

FACET_REGISTER(models::backbone_registry(), "bench_tiny_stride4_dropout", "Bench: three convs, BatchNorm, channel dropout",
               [](const Config& c) {
                 return std::make_shared<test_support::TinyDropoutBackbone>(c.get<int64_t>("in_channels", 3),
                                                                            c.get<int64_t>("channels", 32), 0.1, /*batch_norm=*/true);
               });

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 30, size = 96, passes = 8, every = 1, threads = 0, rounds = 3;
  std::string device = "cpu", backbone = "tiny";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--passes") passes = std::stoll(value);
    else if (flag == "--every") every = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--rounds") rounds = std::max<int64_t>(1, std::stoll(value));
    else if (flag == "--backbone") backbone = value;
    else if (flag == "--device") device = value;
    else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  if (backbone != "tiny" && backbone != "resnet50_fpn") {
    fmt::print(stderr, "--backbone: expected tiny or resnet50_fpn, got {}\n", backbone);
    return 2;
  }
  try {
    const fs::path root = fs::temp_directory_path() / fmt::format("facet_lesion_switches_bench_{}", ::getpid());
    fs::remove_all(root);
    data::synth_registry().create(Config::parse(fmt::format("{{name: deeplesion, patients: 12, slices: 10, size: {}, seed: 2}}", size)),
                                  root / "data");
    const bool tiny = backbone == "tiny";
    // Conditioned proposals only on levels at least this wide (the reference: 100; the tiny
    // detector's one stride-4 level is size / 4 wide).
    const std::string bmc = fmt::format(", sampling: bmc, proposals: bm_conditioned, conditioned_min_width: {}", std::min<int64_t>(100, size / 4));
    struct Variant {
      std::string label, model, rpn, model_keys, sampler, hooks;
    };
    std::vector<Variant> variants = {
        {"plain", "faster_rcnn", "", "", "{name: random}", ""},
        {"bm", "faster_rcnn", ", objectness: bm", "", "{name: random}", ""},
        {"bmc", "faster_rcnn", ", objectness: bm" + bmc, "", "{name: random}", ""},
        {"mask_plain", "mask_rcnn", "", "  mask: {convs: 1, channels: 16, output_size: 7, targets: boxes}", "{name: random}", ""},
        {"bmc_abm", "mask_rcnn", ", objectness: bm" + bmc, "  mask: {convs: 1, channels: 16, output_size: 7, targets: abm}", "{name: random}", ""},
        {"mo_scl_loss_std", "faster_rcnn", "", "", "{name: mo_scl}", ""},
    };
    if (tiny)
      variants.push_back({"mo_scl_mc_dropout", "faster_rcnn", "", "", "{name: mo_scl, difficulty: {uncertainty: mc_dropout}}",
                          fmt::format("hooks: [{{name: mc_dropout, passes: {}, every: {}}}]", passes, every)});
    const auto config = [&](const Variant& v, int64_t n) {
      test_support::SynthDetector d;
      d.root = root / "data";
      d.experiment = "lesion_switches_bench";
      d.model = v.model;
      d.backbone = tiny ? "{name: bench_tiny_stride4_dropout, in_channels: 3}" : "{name: resnet50}\n  fpn: {out_channels: 256}";
      d.rpn = v.rpn;
      d.model_keys = v.model_keys;
      d.sampler = v.sampler;
      d.extra = v.hooks;
      d.evaluate = false;  // timed: training steps only
      d.lr = 1e-3;
      d.steps = n;
      d.threads = threads;
      Config c = test_support::synth_detector_config(d);
      c.set("train.device", device);
      return c;
    };
    // Round 0 warms up (allocator, thread pools, page cache); then `rounds` rounds with the variants
    // interleaved, each variant's median kept (the machine may be shared).
    std::map<std::string, std::vector<double>> times;
    for (int64_t round = 0; round <= rounds; ++round)
      for (const auto& v : variants) {
        train::Trainer t(config(v, round == 0 ? 3 : steps), root / fmt::format("run_{}", v.label), train::Mode::train);
        const auto start = std::chrono::steady_clock::now();
        t.fit();
        if (round > 0) times[v.label].push_back(1000 * seconds_since(start) / static_cast<double>(steps));
        fs::remove_all(root / fmt::format("run_{}", v.label));
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
    // Ratios to the plain detector of the same kind (bmc_abm: to the plain Mask R-CNN).
    std::vector<std::string> rows;
    for (const auto& v : variants) {
      const double ref = v.model == "mask_rcnn" ? ms.at("mask_plain") : ms.at("plain");
      rows.push_back(fmt::format("\"{}\": {{\"ms\": {:.2f}, \"ratio\": {:.3f}}}", v.label, ms.at(v.label), ms.at(v.label) / ref));
    }
    fmt::print("{{\"device\": \"{}\", \"backbone\": \"{}\", \"rounds\": {}, \"steps\": {}, \"size\": {}, \"passes\": {}, \"every\": {}, "
               "\"variants\": {{{}}}, \"deeplesion_size\": {{\"feedback_us_per_step\": {:.1f}, \"epoch_order_ms\": {:.1f}, "
               "\"state_json_ms\": {:.1f}, \"state_json_mb\": {:.2f}, \"epoch_order_per_step_us\": {:.3f}}}}}\n",
               device, backbone, rounds, steps, size, passes, every, join(rows, ", "), feedback_us, order_ms, state_ms,
               static_cast<double>(state.size()) / 1e6, 1000 * order_ms / static_cast<double>(order.size() / 2));
  } catch (const std::exception& e) {
    fmt::print(stderr, "lesion_switches_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
