// Stochastic depth (timm's drop_path): while training, drop a residual branch per sample with
// probability p and scale the kept ones by 1 / (1 - p), as timm does (mask divided, then applied);
// the identity in evaluation or with p = 0. Used by ViT blocks and SATr's transformer blocks.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace facet::models {

inline torch::Tensor drop_path(const torch::Tensor& branch, double p, bool training) {
  if (!training || p <= 0) return branch;
  const double keep = 1 - p;
  std::vector<int64_t> shape(static_cast<size_t>(branch.dim()), 1);
  shape[0] = branch.size(0);
  return branch * torch::empty(shape, branch.options()).bernoulli_(keep).div_(keep);
}

}  // namespace facet::models
