// Consistency between the predictions of several views or models: the generalised Jensen-Shannon
// divergence Masked CoTEX uses between its two ViTs (face.md §4.5).
#pragma once

#include <torch/torch.h>

namespace facet::losses {

// probabilities: [V, B, C] (each [B, C] row a distribution). M = mean over views, clamped at
// `floor`; JS = mean over views of KL(p_v || M), each KL taken element-wise as p (log p - log M)
// with both logs clamped at `floor` (zero where p = 0) and averaged over all B x C elements — the
// released code's scale, i.e. the per-sample divergence divided by C.
torch::Tensor js_divergence(const torch::Tensor& probabilities, double floor = 1e-4);

}  // namespace facet::losses
