// Monte-Carlo dropout uncertainty (Gal & Ghahramani, ICML 2016), the optional uncertainty of Mo-SCL's
// difficulty (curriculum/difficulty.h, `uncertainty: mc_dropout`): T stochastic forward passes with
// dropout on and everything else in eval mode (models::DropoutOnlyTraining — BatchNorm uses and
// keeps its running statistics), no gradients; the per-sample variance of the model's scores over
// the passes. The trainer-side hook that runs it every N steps is train/hooks/mc_dropout.cpp.
//
// Which scores [choices, the paper's are not known — medical.md §2.2(b)]:
//   dense output [B, ...] (`logits` by default): its values as the model gives them, variance over
//     the passes averaged over the non-batch dimensions;
//   detectors (ragged `scores` per image): the image's top_k detection scores, sorted, zero-padded
//     to top_k (a box that vanishes in a pass counts as score 0), variance per rank averaged over
//     the ranks.
#pragma once

#include "data/dataset.h"
#include "models/model.h"

#include <string>

namespace facet::curriculum {

struct McDropoutOptions {
  int64_t passes = 8;        // T
  std::string output;        // the output to read; empty: `logits`, else the detector's ragged `scores`
  int64_t top_k = 10;        // detectors: scores per image
};

// [B] per-sample score variance over `options.passes` passes of `model` on `batch` (on the model's
// device). Fails when the model has no dropout module (every pass would be the same).
torch::Tensor mc_dropout_variance(models::Model& model, const data::Batch& batch, const McDropoutOptions& options);

}  // namespace facet::curriculum
