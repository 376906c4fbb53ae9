// Vision Transformer (Dosovitskiy et al. 2021) in the layout of MAE (He et al. 2022) and timm:
// patch_embed.proj, cls_token, pos_embed, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
// mlp.fc2}, norm — so MAE / timm checkpoints load by name. Pre-norm blocks, exact GELU, stochastic
// depth; MAE's random token dropping for masked views (Masked CoTEX); intermediate block outputs for
// multi-layer fusion (Q-Face); layer ids for layer-wise learning-rate decay (MAE fine-tuning, EMMA).
// Its Linear layers are models::Linear: built in bf16 without initialisation under a
// ConstructionScope (a 7B ViT loads within 13 GB), LoRA-adaptable after construction.
//
// Registered here: the `vit` model (a classifier), the `vit` backbone (patch tokens as a stride-
// patch_size map), and the weight converters `timm_vit` (MAE / timm checkpoints: `module.` / `vit.`
// prefixes, MAE decoder and mask token left out, fc_norm for the final norm of global-pool
// checkpoints, pos_embed resized to the model's grid) and `hf_vit` (Hugging Face ViT / ViT-MAE names,
// the hub's legacy encoder.layer.N.attention.attention.query... and transformers 5's
// layers.N.attention.q_proj..., q/k/v concatenated into qkv; then as timm_vit).
#pragma once

#include "core/config.h"
#include "core/safetensors.h"
#include "models/backbones/backbone.h"
#include "models/layers/linear.h"
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
  // As a backbone: the 1-based blocks whose outputs forward_features returns ("block<k>"); empty =
  // the last block (after the final norm).
  std::vector<int64_t> feature_blocks;

  static ViTOptions from(const Config& c);
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

class ViTAttentionImpl : public torch::nn::Module {
 public:
  ViTAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D]

  Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(ViTAttention);

class ViTMlpImpl : public torch::nn::Module {
 public:
  ViTMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }

  Linear fc1{nullptr}, fc2{nullptr};
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

class ViTImpl : public Backbone {
 public:
  explicit ViTImpl(ViTOptions options);

  // Backbone: the patch tokens of options().feature_blocks as [B, D, H / patch, W / patch] maps,
  // "block<k>"; the last block's after the final norm, earlier ones as the blocks leave them.
  std::vector<FeatureInfo> feature_info() const override;
  TensorDict forward_features(const torch::Tensor& images) override;

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

// pos_embed [1, extra + g0*g0, D] -> [1, extra + grid*grid, D]: the `extra` leading (CLS) rows are
// kept, the patch rows are resized as a g0 x g0 image (bicubic, align_corners false, as DeiT / MAE's
// interpolate_pos_embed). Unchanged when the grids agree.
torch::Tensor resize_position_embedding(const torch::Tensor& pos_embed, int64_t grid, int64_t extra = 1);

// The hf_vit converter's name table on tensors in memory (the loader streams files through the same
// table): Hugging Face ViT / ViT-MAE names (transformers' in-memory `layers.N.attention.q_proj...` or
// the hub files' `encoder.layer.N.attention.attention.query...`, with or without the `vit.` prefix of
// the *ForImageClassification / *ForPreTraining checkpoints) to this layout, q, k and v concatenated
// into qkv. Pooler, classifier and MAE decoder tensors are left out.
safetensors::TensorMap convert_hf_vit(const safetensors::TensorMap& hf);

}  // namespace facet::models
