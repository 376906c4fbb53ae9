// CLIP's image tower (Radford et al. 2021) in the layout of transformers' CLIPVisionModel, so the
// published checkpoints load by name (openai/clip-vit-large-patch14-336 for LLaVA-1.5 and EmoLA,
// flaviagiammarino/pubmed-clip-vit-base-patch32 for LiteGPT):
//   vision_model.embeddings.{class_embedding, patch_embedding.weight (no bias), position_embedding.weight},
//   vision_model.pre_layrnorm [sic], vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj,
//   layer_norm1, mlp.{fc1, fc2}, layer_norm2}, vision_model.post_layernorm.
// Pre-norm blocks with quick-GELU (x * sigmoid(1.702 x)); a LayerNorm before the first block; the
// post-layernorm applies only to the pooled CLS token, as transformers does.
//
// Feature selection as the vision-language systems use it: `feature_layer` indexes the hidden states
// as transformers' output_hidden_states lists them (0 = the embeddings after pre_layrnorm, L = the last
// block; negative from the end: LLaVA's -2 is the penultimate block, LiteGPT's PubMedCLIP -1 is
// last_hidden_state), and `keep_cls` keeps or drops the CLS token (LLaVA's `patch` / `cls_patch`).
// Blocks after the selected one are not run.
//
// Registered here: the backbone `clip_vit` (selected patch tokens as a map at the patch stride;
// `preset: vit_l14_336 | vit_b32 | vit_b16` then any key below), the backbone `biomedclip_vit`
// (BiomedCLIP's open_clip trunk: a timm ViT-B/16, models/backbones/vit.h, loaded with the timm_vit
// converter and strip_prefix `visual.trunk.`), and the converter `hf_clip_vision` (hub CLIPModel /
// CLIPVisionModel files, with or without `vision_model.`; the text tower, projections, logit scale
// and position_ids are left out).
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"
#include "models/backbones/vit.h"
#include "models/layers/linear.h"

#include <torch/torch.h>

#include <string>

namespace facet::models::vlm {

struct ClipVisionOptions {
  int64_t image_size = 224, patch_size = 32, num_channels = 3;
  int64_t hidden_size = 768, intermediate_size = 3072, num_hidden_layers = 12, num_attention_heads = 12;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";  // quick_gelu | gelu
  int64_t feature_layer = -1;  // index into the hidden states (see the header); negative from the end
  bool keep_cls = false;

  // openai/clip-vit-large-patch14-336 (LLaVA-1.5, EmoLA: penultimate layer, CLS dropped -> 576 x 1024).
  static ClipVisionOptions vit_l14_336();
  // openai/clip-vit-base-patch32 shape (PubMedCLIP: last layer, CLS dropped -> 49 x 768).
  static ClipVisionOptions vit_b32();
  static ClipVisionOptions vit_b16();
  // `preset` (one of the above; else `base`) then the keys above override it; errors name the key.
  static ClipVisionOptions from(const Config& c, const ClipVisionOptions& base = vit_b32());

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_positions() const { return grid() * grid() + 1; }
  // The selected hidden state as a non-negative index in 0..num_hidden_layers.
  int64_t feature_index() const;
  // Tokens features() returns per image.
  int64_t num_feature_tokens() const { return grid() * grid() + (keep_cls ? 1 : 0); }
  void validate(const std::string& where = "clip_vit") const;
};

// The tower's own LayerNorm, patch projection and position table (LibTorch's modules build on the CPU
// and cannot move to the meta device, so a 7B LLaVA could not be counted without memory): tensors in
// the ConstructionScope's dtype and device, uninitialised when it defers.
class ClipLayerNormImpl : public torch::nn::Module {
 public:
  ClipLayerNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(ClipLayerNorm);

// A module holding one `weight` (patch_embedding.weight [D, C, p, p], position_embedding.weight [P, D]).
class ClipWeightImpl : public torch::nn::Module {
 public:
  ClipWeightImpl(std::vector<int64_t> shape, double std);
  torch::Tensor weight;
};
TORCH_MODULE(ClipWeight);

class ClipAttentionImpl : public torch::nn::Module {
 public:
  // causal: each token attends to itself and those before it (the text tower).
  ClipAttentionImpl(int64_t dim, int64_t heads, bool causal = false);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D]
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_;
  bool causal_;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t dim, int64_t hidden, std::string act);
  torch::Tensor forward(const torch::Tensor& x);
  Linear fc1{nullptr}, fc2{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipVisionOptions& o);
  ClipEncoderLayerImpl(int64_t dim, int64_t heads, int64_t intermediate, double eps, const std::string& act, bool causal);
  torch::Tensor forward(const torch::Tensor& x);
  ClipAttention self_attn{nullptr};
  ClipLayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipVisionEmbeddingsImpl(const ClipVisionOptions& o);
  torch::Tensor forward(const torch::Tensor& pixels);  // [B, 1 + N, D]
  torch::Tensor class_embedding;
  ClipWeight patch_embedding{nullptr};     // no bias, as CLIP
  ClipWeight position_embedding{nullptr};

 private:
  int64_t patch_size_;
};
TORCH_MODULE(ClipVisionEmbeddings);

// transformers' CLIPVisionTransformer (registered as `vision_model`).
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipVisionTransformerImpl(const ClipVisionOptions& o);
  ClipVisionEmbeddings embeddings{nullptr};
  ClipLayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
  torch::nn::ModuleList layers{nullptr};  // registered as encoder.layers
};
TORCH_MODULE(ClipVisionTransformer);

struct ClipVisionOutput {
  torch::Tensor last_hidden_state;  // [B, 1 + N, D], no post-layernorm
  torch::Tensor pooler_output;      // [B, D]: post_layernorm(CLS)
};

class ClipVisionImpl : public Backbone {
 public:
  explicit ClipVisionImpl(ClipVisionOptions options);

  // pixels [B, C, image_size, image_size].
  ClipVisionOutput forward(const torch::Tensor& pixels);
  // Hidden state `index` (as feature_layer; negative from the end), [B, 1 + N, D]; later blocks are not run.
  torch::Tensor hidden_state(const torch::Tensor& pixels, int64_t index);
  // The selected tokens: hidden state feature_layer, CLS kept or dropped; [B, num_feature_tokens, D].
  torch::Tensor features(const torch::Tensor& pixels);

  // Backbone: the selected patch tokens as a map "layer<k>" [B, D, grid, grid].
  std::vector<FeatureInfo> feature_info() const override;
  TensorDict forward_features(const torch::Tensor& images) override;

  const ClipVisionOptions& options() const { return options_; }
  ClipVisionTransformer vision_model{nullptr};

 private:
  ClipVisionOptions options_;
};
TORCH_MODULE(ClipVision);

// BiomedCLIP's image trunk (open_clip `hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`,
// `.visual.trunk`): timm's vit_base_patch16_224, exact GELU, LayerNorm eps 1e-6.
ViTOptions biomedclip_vit_options();

}  // namespace facet::models::vlm
