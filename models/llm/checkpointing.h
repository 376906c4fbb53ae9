// Gradient checkpointing of one decoder layer (Chen et al. 2016), since LibTorch has no
// torch.utils.checkpoint: forward runs the layer without recording a graph and keeps only its input;
// backward runs it again with the graph and back-propagates through it. The random state is saved
// and restored around the recomputation, so dropout (LoRA's) draws the same masks, and the
// recomputation runs under the autocast state of the forward: the gradients equal the plain run's.
// Memory per layer drops from every activation to the layer's input.
#pragma once

#include "models/llm/llama.h"

namespace facet::models::llm {

torch::Tensor checkpointed_layer(LlamaDecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& cos,
                                 const torch::Tensor& sin, const torch::Tensor& mask);

}  // namespace facet::models::llm
