// A segmentation target as the class map that per-pixel losses and metrics compare logits
// [B, C, H, W] with: a mask field [B, 1, H, W] (float 0/1 lesion masks, or class numbers) or a map
// [B, H, W] becomes int64 [B, H, W]. Anything else — class probabilities shaped like the logits,
// or logits that are not per pixel — is returned as it is.
#pragma once

#include <torch/types.h>

namespace facet::data {

inline torch::Tensor class_map(torch::Tensor target, const torch::Tensor& logits) {
  if (logits.dim() < 3) return target;
  if (target.dim() == logits.dim() && target.size(1) == 1 && logits.size(1) > 1) target = target.squeeze(1);
  if (target.dim() != logits.dim() - 1) return target;
  return target.is_floating_point() ? target.round().to(torch::kLong) : target.to(torch::kLong);
}

}  // namespace facet::data
