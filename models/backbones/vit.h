// Vision Transformer (Dosovitskiy et al. 2021) in the layout of MAE (He et al. 2022) and timm:
// patch_embed.proj, cls_token, pos_embed, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
// mlp.fc2}, norm — so MAE / timm checkpoints load by name, and Hugging Face ViT / ViT-MAE ones
// through convert_hf_vit. Pre-norm blocks, exact GELU, stochastic depth; MAE's random token
// dropping for masked views (Masked CoTEX); intermediate block outputs for multi-layer fusion
// (Q-Face); layer ids for layer-wise learning-rate decay (MAE fine-tuning, EMMA).
#pragma once

#include "core/config.h"
#include "core/safetensors.h"
#include "models/model.h"

#include <torch/torch.h>

#include <vector>

namespace facet::models {

struct ViTOptions {
  int64_t image_size = 224, patch_size = 16, in_channels = 3;
  int64_t embed_dim = 768, depth = 12, num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double norm_eps = 1e-6;   // MAE / timm; Hugging Face ViT uses 1e-12
  double drop_path = 0.0;   // stochastic depth, rising linearly to this over the blocks
  bool sincos_pos_embed = false;  // MAE's fixed 2-D sin-cos table (not trained) instead of a learned one

  static ViTOptions from(const Config& c);
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

class ViTAttentionImpl : public torch::nn::Module {
 public:
  ViTAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D]

  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(ViTAttention);

class ViTMlpImpl : public torch::nn::Module {
 public:
  ViTMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ViTMlp);

class ViTBlockImpl : public torch::nn::Module {
 public:
  ViTBlockImpl(const ViTOptions& o, double drop_path);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ViTAttention attn{nullptr};
  ViTMlp mlp{nullptr};

 private:
  double drop_path_;
};
TORCH_MODULE(ViTBlock);

// What forward_tokens returns.
struct ViTTokens {
  torch::Tensor tokens;                // [B, 1 + kept, D] after the final norm (CLS first)
  std::vector<torch::Tensor> hidden;   // outputs of the requested blocks, before the final norm
  torch::Tensor mask;                  // [B, N] 1 = dropped patch (MAE convention); undefined without masking
  torch::Tensor ids_restore;           // [B, N] int64; undefined without masking
};

class ViTImpl : public torch::nn::Module {
 public:
  explicit ViTImpl(ViTOptions options);

  // x [B, C, H, W] with H = W = image_size. `mask_ratio` > 0 drops that share of the patch tokens
  // per sample as MAE does (position embeddings added first; the kept tokens are those with the
  // smallest `noise` [B, N], uniform noise when undefined). `return_blocks` are 1-based block
  // numbers whose outputs go to ViTTokens::hidden.
  ViTTokens forward_tokens(const torch::Tensor& x, double mask_ratio = 0.0, torch::Tensor noise = {},
                           const std::vector<int64_t>& return_blocks = {});
  // The final-norm CLS token, [B, D].
  torch::Tensor forward(const torch::Tensor& x);

  // Layer-wise lr decay ids (BEiT / MAE): 0 = patch, position and CLS embeddings, 1..depth = the
  // blocks, depth + 1 = everything after them (final norm). -1 for a name that is not a parameter here.
  int64_t layer_id(const std::string& parameter_name) const;
  int64_t num_layer_ids() const { return options_.depth + 2; }
  const ViTOptions& options() const { return options_; }

  torch::nn::Conv2d patch_proj{nullptr};  // registered as patch_embed.proj
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  ViTOptions options_;
};
TORCH_MODULE(ViT);

// MAE's fixed position table: [1 + grid*grid, dim], a zero row for CLS, then for each patch
// (row-major) sin/cos of its column and row frequencies ([sin_w | cos_w | sin_h | cos_h] halves as in
// the MAE code, omega = 1 / 10000^(2i/(dim/2))).
torch::Tensor sincos_position_table(int64_t dim, int64_t grid);

// Hugging Face ViT / ViT-MAE weights (transformers' in-memory names `layers.N.attention.q_proj...`
// or the hub files' `encoder.layer.N.attention.attention.query...`, with or without the `vit.`
// prefix of the *ForImageClassification / *ForPreTraining checkpoints) to this layout: q, k and v
// are concatenated into qkv. Pooler, classifier and MAE decoder tensors are left out.
safetensors::TensorMap convert_hf_vit(const safetensors::TensorMap& hf);

}  // namespace facet::models
