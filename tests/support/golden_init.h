// The deterministic weights of tools/golden/backbones_golden.py ("facet-golden-init-v1"), rebuilt
// in C++ so parity goldens need not store weights: the reference library's tensors, by name, in
// sorted-name order, each from a CPU generator seeded 1000 + i. LibTorch's generator and kernels are
// the ones the Python side used, so the values are bit-identical.
#pragma once

#include "core/safetensors.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace facet::testing {

inline bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `shapes`: the reference state_dict's names and shapes (the golden's "state_dict_shapes"). Names
// ending in num_batches_tracked are the only integer tensors of these models; they are zeros.
inline safetensors::TensorMap golden_init(const std::map<std::string, std::vector<int64_t>>& shapes) {
  safetensors::TensorMap out;
  int64_t i = 0;
  for (const auto& [name, shape] : shapes) {  // std::map: byte order, as Python's sorted() of ASCII names
    if (ends_with(name, "num_batches_tracked")) {
      out[name] = torch::zeros(shape, torch::kLong);
      continue;
    }
    auto g = at::make_generator<at::CPUGeneratorImpl>(1000 + i++);
    torch::Tensor t;
    if (ends_with(name, "running_var")) t = torch::rand(shape, g) + 0.5;
    else if (ends_with(name, "running_mean")) t = 0.1 * torch::randn(shape, g);
    else if (shape.size() == 1 && ends_with(name, "weight")) t = 1 + 0.1 * torch::randn(shape, g);
    else if (shape.size() == 1 && ends_with(name, "bias")) t = 0.1 * torch::randn(shape, g);
    else if (shape.size() >= 2 && ends_with(name, "weight")) {
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      t = torch::randn(shape, g) / std::sqrt(static_cast<double>(numel) / static_cast<double>(shape[0]));
    } else {
      t = 0.02 * torch::randn(shape, g);
    }
    out[name] = t;
  }
  return out;
}

// The golden file's "state_dict_shapes".
inline std::map<std::string, std::vector<int64_t>> golden_shapes(const safetensors::File& golden) {
  return nlohmann::json::parse(golden.metadata().at("state_dict_shapes")).get<std::map<std::string, std::vector<int64_t>>>();
}

}  // namespace facet::testing
