// The text-conditioned denoising UNet of latent diffusion (Rombach et al., CVPR 2022) in diffusers'
// UNet2DConditionModel layout, so Stable Diffusion 1.x's `unet/diffusion_pytorch_model.safetensors`
// loads by name (converter `diffusers_unet`; the original single-file checkpoints: `sd_single_file`).
//
//   conv_in -> down_blocks (resnets, attentions, downsamplers) -> mid_block -> up_blocks (skip
//   connections concatenated) -> conv_norm_out, SiLU, conv_out; a sinusoidal timestep embedding
//   (time_embedding.linear_1/2) enters every resnet, the text (encoder_hidden_states) every attention.
//
// SD 1.5 (preset sd15, ../shared/research/infra.md §2.3): channels 320/640/1280/1280, three
// cross-attention down blocks and a plain one, 2 resnets per block (3 per up block), 8 heads,
// context 768: 859,520,964 parameters.
//
//   model: {unet: {preset: sd15}}   # or any key below: block_out_channels: [32, 64], ...
#pragma once

#include "core/config.h"
#include "models/generative/blocks.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace facet::models::generative {

struct UNet2DConditionOptions {
  int64_t in_channels = 4, out_channels = 4, sample_size = 64;
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  // Per block, in order: does it carry attention (CrossAttnDownBlock2D / CrossAttnUpBlock2D)? The up
  // blocks mirror the down blocks (SD: [true, true, true, false] down, [false, true, true, true] up).
  std::vector<bool> cross_attention{true, true, true, false};
  int64_t layers_per_block = 2;
  // Heads per block (one value: every block). diffusers' `attention_head_dim` of SD 1.x (8) is read
  // as the number of heads for compatibility, so the key takes that name too.
  std::vector<int64_t> attention_heads{8};
  int64_t cross_attention_dim = 768;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  int64_t transformer_layers_per_block = 1;
  bool use_linear_projection = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;

  static UNet2DConditionOptions sd15();
  // `preset: sd15` (the default) then the keys above; diffusers' config.json key names are read too
  // (attention_head_dim, down_block_types), so a model's config.json values can be pasted.
  static UNet2DConditionOptions from(const Config& c);
  int64_t heads(size_t block) const { return attention_heads.size() == 1 ? attention_heads[0] : attention_heads.at(block); }
  int64_t time_embed_dim() const { return 4 * block_out_channels.at(0); }
  void validate(const std::string& where) const;
};

// A down or up block: resnets, attentions (when it has cross-attention), and its resampler.
class UNetBlockImpl : public torch::nn::Module {
 public:
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr}, downsamplers{nullptr}, upsamplers{nullptr};
};
TORCH_MODULE(UNetBlock);

class UNetMidBlockImpl : public torch::nn::Module {
 public:
  UNetMidBlockImpl(const UNet2DConditionOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb, const torch::Tensor& context);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(UNetMidBlock);

class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// diffusers' get_timestep_embedding: [B] (integer or fractional) timesteps -> [B, dim] sinusoids,
// [cos, sin] when flip_sin_to_cos, frequencies exp(-ln(10000) k / (dim/2 - shift)).
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double shift);

class UNet2DConditionImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionImpl(UNet2DConditionOptions options);

  // sample [B, in, H, W] (H, W multiples of 2^(blocks-1) or not: upsampling follows the skips),
  // timesteps [B] or a scalar, context [B, L, cross_attention_dim] -> [B, out, H, W].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps, const torch::Tensor& context);

  const UNet2DConditionOptions& options() const { return options_; }

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, up_blocks{nullptr};
  UNetMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};

 private:
  UNet2DConditionOptions options_;
};
TORCH_MODULE(UNet2DCondition);

}  // namespace facet::models::generative
