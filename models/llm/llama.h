// LLaMA-family causal decoder (Touvron et al. 2023; Llama-2, Vicuna, Llama-3, Mistral) in the layout
// of transformers' LlamaForCausalLM, so Hugging Face checkpoints load by name:
//   model.embed_tokens.weight, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   post_attention_layernorm, mlp.{gate,up,down}_proj}.weight, model.norm.weight, lm_head.weight.
// Pre-norm blocks with RMSNorm (computed in fp32, as transformers does), rotary position embeddings
// (default, linear, dynamic-NTK and llama3 scaling), SwiGLU MLP, grouped-query attention through
// at::scaled_dot_product_attention, tied or untied output head; Mistral's sliding window. Every
// Linear is a models::Linear: built in bf16 without initialisation under a ConstructionScope and
// LoRA-adaptable after construction (PEFT's names: model.layers.0.self_attn.q_proj.lora_A.weight).
//
// Registered here: the model `llama` (config: {name: llama, config: path/to/config.json} or the
// config.json keys inline; a ComputesLosses model whose loss is the chunked next-token cross-entropy
// of `labels`), and from_pretrained() for a Hugging Face checkpoint directory (config.json +
// model.safetensors or a sharded model.safetensors.index.json), streamed in the target dtype.
#pragma once

#include "core/config.h"
#include "models/layers/linear.h"
#include "models/model.h"

#include <nlohmann/json_fwd.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace facet::models::llm {

// RoPE frequency scaling (config.json `rope_scaling`, transformers 5: `rope_parameters`).
struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;          // llama3 (and dynamic when set)
};

// Hugging Face LlamaConfig / MistralConfig keys, with transformers' defaults.
struct LlamaConfig {
  std::string model_type = "llama";
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 0;  // 0: = num_attention_heads
  int64_t head_dim = 0;             // 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false, mlp_bias = false;
  int64_t sliding_window = 0;  // Mistral; 0 = none
  int64_t bos_token_id = 1, pad_token_id = -1;  // -1: none
  std::vector<int64_t> eos_token_ids = {2};       // Llama-3 configs list several
  std::string hidden_act = "silu";

  // From config.json's text (the keys above; unknown keys ignored; a wrong type or an unsupported
  // value is an error naming `origin` and the key).
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
  static LlamaConfig from_file(const std::filesystem::path& config_json);
  // A model config node: `config: <config.json or its directory>` and/or the keys inline (inline wins).
  static LlamaConfig from(const Config& c);
  nlohmann::json to_json() const;

  int64_t kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
  int64_t dim_per_head() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // Parameters of LlamaForCausalLM (lm_head counted once when tied).
  int64_t num_parameters() const;
  void validate() const;
};

// RMSNorm (Zhang & Sennrich 2019) as transformers computes it: normalised in fp32, cast back, scaled.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// Token embedding with a plain `weight` [vocab, dim], allocated under the ConstructionScope (a 7B
// model's 131M-entry table is not first built in fp32); initialised N(0, 0.02) like transformers.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num, int64_t dim);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

// Inverse frequencies [head_dim / 2] (fp32) and the cos/sin scaling, as transformers' rope init
// functions compute them; `seq_len` matters only for dynamic scaling (NTK base grows past the limit).
struct Rope {
  torch::Tensor inv_freq;
  double attention_scaling = 1.0;
};
Rope rope_frequencies(const LlamaConfig& c, int64_t seq_len = 0);

// Per-layer keys and values of the tokens seen so far: [B, kv_heads, T, head_dim] each, grown in
// place (capacity doubles) so decoding one token copies one token.
class KVCache {
 public:
  explicit KVCache(int64_t layers) : k_(layers), v_(layers), length_(layers, 0) {}
  // Appends [B, H, t, D] and returns views of everything cached for the layer.
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  int64_t length() const { return length_.empty() ? 0 : length_.back(); }  // tokens after the last layer's append
  int64_t length(int64_t layer) const { return length_.at(layer); }
  // Keeps batch rows `rows` (int64 indices) only (finished sequences dropped).
  void select_rows(const torch::Tensor& rows);

 private:
  std::vector<torch::Tensor> k_, v_;
  std::vector<int64_t> length_;
};

// What a forward pass reads. Exactly one of input_ids [B, T] / inputs_embeds [B, T, H].
struct LlamaInputs {
  torch::Tensor input_ids;
  torch::Tensor inputs_embeds;
  // [B, past + T]: 1 for real tokens, 0 for padding (left or right); undefined = all real.
  torch::Tensor attention_mask;
  // [B, T]; undefined = past + 0..T-1, padding included, as transformers' forward does (generate
  // passes positions_from_mask instead, so left-padded prompts start at position 0).
  torch::Tensor position_ids;
  KVCache* cache = nullptr;  // appended to when given
};

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c);
  // x [B, T, H]; cos/sin [B, T, head_dim]; mask: bool [B, 1, T, S] (true = attend) or undefined
  // (plain causal over T when there is nothing cached, else everything cached).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache, int64_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x) { return down_proj(torch::silu(gate_proj(x)) * up_proj(x)); }
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const LlamaConfig& c, int64_t index);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  int64_t index;
};
TORCH_MODULE(LlamaDecoderLayer);

// transformers' LlamaModel: embeddings, layers, final norm.
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c);
  torch::Tensor forward(const LlamaInputs& in);  // last hidden state [B, T, H], after the final norm
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
  // Recompute each decoder layer in backward instead of keeping its activations (training only;
  // gradients equal the plain run's). Not with a KV cache.
  bool gradient_checkpointing = false;

 private:
  LlamaConfig config_;
  std::vector<LlamaDecoderLayer> layer_list_;
};
TORCH_MODULE(LlamaModel);

// The attention mask the layers use: bool [B, 1, T, past + T], true where query i (at cache index
// past + i) may see key j: j <= past + i, key j is a real token, and (sliding window w) past + i - j < w.
// Rows that would see nothing (queries at padding) see themselves, so no NaN ever enters the
// residual stream. Undefined when plain causal attention (or, with past > 0 and T == 1, attending
// everything) is exact.
torch::Tensor causal_mask(const torch::Tensor& attention_mask, int64_t batch, int64_t t, int64_t past,
                          int64_t sliding_window, const torch::Device& device);

// Position ids for a (left- or right-) padded batch: the count of real tokens before each token
// (padding gets 1, as transformers' generate does); the last `t` columns.
torch::Tensor positions_from_mask(const torch::Tensor& attention_mask, int64_t t);

class LlamaForCausalLM : public Model, public ComputesLosses {
 public:
  explicit LlamaForCausalLM(const LlamaConfig& c);
  explicit LlamaForCausalLM(const Config& c) : LlamaForCausalLM(LlamaConfig::from(c)) {}

  // Batch fields: input_ids [B, T] int64, optional attention_mask [B, T]. Outputs "logits" [B, T, V].
  Outputs forward(const data::Batch& batch) override;
  // + labels [B, T] (kIgnoreIndex where not supervised; shifted inside, as transformers does):
  // the mean next-token cross-entropy over supervised tokens, chunked (llm/lm_loss.h), "loss" part.
  losses::LossResult forward_losses(const data::Batch& batch, Outputs& outputs) override;

  torch::Tensor hidden_states(const LlamaInputs& in) { return model->forward(in); }
  torch::Tensor logits(const torch::Tensor& hidden);  // [.., H] -> [.., V], in fp32
  torch::Tensor forward_logits(const LlamaInputs& in) { return logits(hidden_states(in)); }
  // The output projection's weight (embed_tokens.weight when tied).
  torch::Tensor head_weight() const;

  const LlamaConfig& config() const { return config_; }

  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // null when tied
  int64_t loss_chunk_tokens = 1024;

 private:
  LlamaConfig config_;
};

struct PretrainedOptions {
  torch::Dtype dtype = torch::kBFloat16;
  torch::Device device = torch::kCPU;
};
// A Hugging Face checkpoint directory (config.json + model.safetensors[.index.json]): built without
// initialisation in options.dtype and streamed from the memory map by init_weights. Legacy
// rotary_emb.inv_freq tensors, and lm_head.weight when the config ties it, are ignored.
std::shared_ptr<LlamaForCausalLM> from_pretrained(const std::filesystem::path& dir, const PretrainedOptions& options = {});

}  // namespace facet::models::llm
