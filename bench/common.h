// What the benchmarks here share with each other and, line for line, with their Python sides
// (bench/timing.py): the timing loop, and Facet's optimiser as the trainer builds it.
#pragma once

#include "core/config.h"
#include "train/optimizer.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace facet::bench {

// `warmup` untimed calls, then the mean wall time of `calls` calls in milliseconds; `sync` (device
// work) brackets the timed region where the Python side calls torch.cuda.synchronize().
inline double ms_per_call(const std::function<void()>& call, int64_t warmup, int64_t calls,
                          const std::function<void()>& sync = {}) {
  for (int64_t i = 0; i < warmup; ++i) call();
  if (sync) sync();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < calls; ++i) call();
  if (sync) sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
         static_cast<double>(calls);
}

// The optimiser `optim_yaml` describes (the config's `optim` node), over `params` as one group with
// the node's lr and weight decay: what the trainer would build, fused kernels included.
inline std::unique_ptr<torch::optim::Optimizer> optimizer(const std::string& optim_yaml,
                                                          const std::vector<torch::Tensor>& params) {
  const Config c = Config::parse(optim_yaml);
  return train::optimizer_registry().create(
      c, {{"all", params, c.get<double>("lr"), c.get<double>("weight_decay", 0.0)}});
}

// Freezes every parameter of `model` but those `trains(name)` keeps; returns the kept ones.
inline std::vector<torch::Tensor> train_only(torch::nn::Module& model, const std::function<bool(const std::string&)>& trains) {
  std::vector<torch::Tensor> kept;
  for (auto& item : model.named_parameters()) {
    if (!trains(item.key())) item.value().requires_grad_(false);
    else kept.push_back(item.value());
  }
  return kept;
}

}  // namespace facet::bench
