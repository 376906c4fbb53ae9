// Training memory per GPU of a LLaMA-family model, estimated from its shapes (what `facet summary`
// prints before a 7B run is tried): weights, gradients and AdamW moments of what trains, the
// activations the decoder layers keep for backward (all of them, or each layer's input with
// gradient checkpointing plus one layer recomputed), and the loss's logits (chunked or not).
// Activations per token and layer, in the compute dtype, are counted from the tensors this
// implementation saves: the RMSNorm inputs and their fp32 copies, q/k/v after RoPE, the attention
// output and its log-sum-exp (SDPA keeps no [T x T] matrix), the SwiGLU's gate, up, activation and
// product: about 12 h + 4 kv + 4 i values (h hidden, kv the key/value width, i the MLP width).
// An estimate, not a measurement: allocator slack, CUDA context and workspace are not included.
#pragma once

#include "models/llm/llama.h"

#include <string>

namespace facet::models::llm {

struct MemoryEstimate {
  int64_t parameters = 0, trainable = 0;
  double weights = 0, gradients = 0, optimizer = 0, activations = 0, logits = 0;  // bytes
  double total() const { return weights + gradients + optimizer + activations + logits; }
  std::string table() const;  // one line per part, GiB
};

struct MemoryOptions {
  int64_t batch = 1, seq_len = 2048;
  bool gradient_checkpointing = false;
  int64_t loss_chunk_tokens = 1024;  // 0: the naive loss over the whole [B x T x V] logits
  int64_t activation_bytes = 2;      // bf16 compute
  int64_t optimizer_state_bytes = 4; // AdamW's two moments, fp32 each
};

// `model` gives the parameter bytes and what trains (requires_grad), `config` the shapes.
MemoryEstimate estimate_training_memory(const torch::nn::Module& model, const LlamaConfig& config, const MemoryOptions& options);

}  // namespace facet::models::llm
