// Outputs: what a model returns for a batch. Batch tensors ([B, ...] each, the TensorDict it
// extends), per-sample results whose size differs from sample to sample (a detector's boxes,
// scores and labels per image) and per-sample text (generated answers). They travel unchanged to
// losses, metrics, prediction files and pictures.
#pragma once

#include "core/tensor_dict.h"

#include <map>
#include <string>
#include <vector>

namespace facet {

struct Outputs : TensorDict {
  Outputs() = default;
  Outputs(TensorDict tensors) : TensorDict(std::move(tensors)) {}  // NOLINT: a plain dict is an Outputs
  Outputs(std::initializer_list<TensorDict::Map::value_type> items) : TensorDict(items) {}

  std::map<std::string, std::vector<torch::Tensor>> ragged;  // B tensors each
  std::map<std::string, std::vector<std::string>> text;      // B strings each

  // Everything moved to `device` (ragged tensors too); text is unchanged.
  Outputs to(const torch::Device& device) const {
    Outputs out(TensorDict::to(device));
    for (const auto& [name, list] : ragged)
      for (const auto& t : list) out.ragged[name].push_back(t.defined() ? t.to(device) : t);
    out.text = text;
    return out;
  }
};

}  // namespace facet
