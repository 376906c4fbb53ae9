#include "models/llm/memory.h"

#include <fmt/format.h>

namespace facet::models::llm {

MemoryEstimate estimate_training_memory(const torch::nn::Module& model, const LlamaConfig& c, const MemoryOptions& o) {
  MemoryEstimate m;
  for (const auto& p : model.parameters()) {
    const double bytes = static_cast<double>(p.numel()) * static_cast<double>(p.element_size());
    m.parameters += p.numel();
    m.weights += bytes;
    if (p.requires_grad()) {
      m.trainable += p.numel();
      m.gradients += bytes;
      m.optimizer += 2.0 * static_cast<double>(p.numel()) * static_cast<double>(o.optimizer_state_bytes);
    }
  }
  const double tokens = static_cast<double>(o.batch) * static_cast<double>(o.seq_len);
  const double h = static_cast<double>(c.hidden_size), i = static_cast<double>(c.intermediate_size);
  const double kv = static_cast<double>(c.kv_heads() * c.dim_per_head());
  const double per_layer = (12 * h + 4 * kv + 4 * i) * static_cast<double>(o.activation_bytes) * tokens;
  const double layers = static_cast<double>(c.num_hidden_layers);
  if (o.gradient_checkpointing) m.activations = layers * h * static_cast<double>(o.activation_bytes) * tokens + per_layer;
  else m.activations = layers * per_layer;
  m.activations += 2 * h * static_cast<double>(o.activation_bytes) * tokens;  // embeddings out, final norm
  // fp32 logits and their gradient: one chunk at a time, or all at once (plus the log-softmax).
  const double v = static_cast<double>(c.vocab_size);
  m.logits = o.loss_chunk_tokens > 0 ? 2 * std::min<double>(tokens, static_cast<double>(o.loss_chunk_tokens)) * v * 4 : 3 * tokens * v * 4;
  return m;
}

std::string MemoryEstimate::table() const {
  const double gib = 1024.0 * 1024.0 * 1024.0;
  return fmt::format(
      "  weights          {:8.2f} GiB\n  gradients        {:8.2f} GiB\n  AdamW moments    {:8.2f} GiB\n"
      "  activations      {:8.2f} GiB\n  loss logits      {:8.2f} GiB\n  total            {:8.2f} GiB\n",
      weights / gib, gradients / gib, optimizer / gib, activations / gib, logits / gib, total() / gib);
}

}  // namespace facet::models::llm
