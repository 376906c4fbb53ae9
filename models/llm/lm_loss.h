// Language-model cross-entropy without the [tokens x vocab] fp32 logits tensor: the output
// projection and the softmax run over chunks of tokens, and backward recomputes each chunk's logits
// (a custom autograd function), so peak memory is chunk x vocab instead of tokens x vocab — for a
// 7B Llama at 4096 tokens x 32000 that is 0.5 GB per batch row saved twice (logits and their
// gradient). Same values and gradients as cross_entropy(hidden @ weight^T) up to float rounding.
#pragma once

#include <torch/torch.h>

namespace facet::models::llm {

// Per-token losses [N] (fp32; 0 where targets == -100) of hidden [N, H] against targets [N] with
// logits = hidden @ weight^T ([V, H], any floating dtype; logits and softmax in fp32), `chunk`
// tokens at a time. Differentiable in hidden and weight.
torch::Tensor chunked_token_losses(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                                   int64_t chunk = 1024);

// The plain version: cross_entropy(logits [N, V], targets, reduction none) — for a head with
// adapters, and as the reference in tests.
torch::Tensor naive_token_losses(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace facet::models::llm
