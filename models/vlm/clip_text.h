// CLIP's text tower (Radford et al. 2021) in the layout of transformers' CLIPTextModel, so Stable
// Diffusion 1.x's `text_encoder/model.safetensors` (openai/clip-vit-large-patch14's text half) loads
// by name: text_model.embeddings.{token_embedding, position_embedding}.weight,
// text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.{fc1, fc2}, layer_norm2},
// text_model.final_layer_norm. Pre-norm blocks with quick-GELU and a causal mask (no padding mask:
// Stable Diffusion pads with <|endoftext|> and lets the causal mask do the rest).
//
// SD 1.x conditions the UNet on last_hidden_state (after final_layer_norm), 77 x 768; "CLIP skip"
// variants take an earlier hidden state through the same final norm (hidden_state()).
//
// SD 1.x (preset sd15): vocab 49408, width 768, 12 layers, 12 heads, 77 positions: 123,060,480
// parameters (../shared/research/infra.md §2.2).
#pragma once

#include "core/config.h"
#include "models/vlm/clip_vision.h"

#include <torch/torch.h>

namespace facet::models::vlm {

struct ClipTextOptions {
  int64_t vocab_size = 49408, max_position_embeddings = 77;
  int64_t hidden_size = 768, intermediate_size = 3072, num_hidden_layers = 12, num_attention_heads = 12;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";
  // The pooled token: with SD 1.x's config value 2 (wrong, kept for parity) transformers pools at the
  // highest id in the row (<|endoftext|> = 49407 is the highest); otherwise the first eos_token_id.
  int64_t eos_token_id = 2;

  static ClipTextOptions sd15();
  // `preset: sd15` (the default) then the keys above; errors name the key.
  static ClipTextOptions from(const Config& c);
  void validate(const std::string& where) const;
};

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipTextEmbeddingsImpl(const ClipTextOptions& o);
  torch::Tensor forward(const torch::Tensor& input_ids);  // [B, L] -> [B, L, D], positions added
  ClipWeight token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

// transformers' CLIPTextTransformer (registered as `text_model`).
class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipTextTransformerImpl(const ClipTextOptions& o);
  ClipTextEmbeddings embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};  // registered as encoder.layers
  ClipLayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

struct ClipTextOutput {
  torch::Tensor last_hidden_state;  // [B, L, D], after final_layer_norm
  torch::Tensor pooler_output;      // [B, D]: last_hidden_state at the end-of-text token
};

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(ClipTextOptions options);

  // input_ids [B, L] with L <= max_position_embeddings.
  ClipTextOutput forward(const torch::Tensor& input_ids);
  // Hidden state `index` as transformers' output_hidden_states lists them (0 = the embeddings, L =
  // the last block; negative from the end), before the final norm; later blocks are not run.
  torch::Tensor hidden_state(const torch::Tensor& input_ids, int64_t index);
  // The word embeddings of `input_ids` [B, L] -> [B, L, D] (no positions), and the tower run from
  // word embeddings — methods that learn words (textual inversion, DETEX's mapped attribute words)
  // put theirs at the placeholder's positions in between. encode_words(word_embeddings(ids)) ==
  // forward(ids).last_hidden_state; `index` selects the hidden state as hidden_state() does, then
  // the final norm is applied.
  torch::Tensor word_embeddings(const torch::Tensor& input_ids);
  torch::Tensor encode_words(const torch::Tensor& words, int64_t index = -1);

  const ClipTextOptions& options() const { return options_; }
  ClipTextTransformer text_model{nullptr};

 private:
  // The blocks up to hidden state `index` (negative from the end) over the embedded input `h`.
  torch::Tensor run_layers(torch::Tensor h, int64_t index);

  ClipTextOptions options_;
};
TORCH_MODULE(ClipTextModel);

}  // namespace facet::models::vlm
