// The building blocks of latent diffusion's networks (Rombach et al. 2022), in diffusers' layout so
// Stable Diffusion's published files load by name (../shared/research/infra.md §2.3, §2.4):
//   ResnetBlock2D   norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut (when channels change)
//   Downsample2D    conv (stride 2; the VAE pads right/bottom by one and convolves without padding)
//   Upsample2D      nearest x2, then conv
//   Attention       to_q, to_k, to_v (no bias in the UNet's transformer blocks), to_out.0
//   Transformer2D   norm (GroupNorm eps 1e-6), proj_in, transformer_blocks.N (norm1 attn1 norm2 attn2
//                   norm3 ff.net.0.proj ff.net.2: self-attention, cross-attention on the text, GEGLU), proj_out
//   SpatialAttention the VAE's one-head self-attention over pixels, group_norm first, residual added
#pragma once

#include "models/layers/linear.h"

#include <torch/torch.h>

#include <optional>

namespace facet::models::generative {

// GroupNorm, Conv2d: LibTorch's own modules, cast to the ConstructionScope's dtype and device.
torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps);
torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0);

struct ResnetBlockOptions {
  int64_t in_channels = 0, out_channels = 0;
  int64_t temb_channels = 0;  // 0: no timestep input (the VAE)
  int64_t groups = 32;
  double eps = 1e-5;
};

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  explicit ResnetBlock2DImpl(const ResnetBlockOptions& o);
  // x [B, in, H, W]; temb [B, temb_channels] (undefined without one).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

class Downsample2DImpl : public torch::nn::Module {
 public:
  // padding 1: the UNet's; padding 0: the VAE's, which pads right and bottom by one first.
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};

 private:
  int64_t padding_;
};
TORCH_MODULE(Downsample2D);

class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(int64_t channels);
  // Nearest-neighbour to `size` (the skip connection's, for inputs not a multiple of the network's
  // stride), to twice the input without one.
  torch::Tensor forward(const torch::Tensor& x, std::optional<std::vector<int64_t>> size = std::nullopt);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// Multi-head attention of queries [B, Lq, dim] over a context [B, Lk, context_dim] (itself when
// undefined), head_dim^-0.5 scaling.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, int64_t context_dim, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [0] Linear, [1] Dropout (no parameters)
  // Custom Diffusion: no gradient through the key and value of the context's first token (the
  // start-of-text token, which draws most of the attention), so tuning K/V drifts less.
  bool freeze_start_token_kv = false;

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

// GEGLU feed-forward: proj to 2 x 4 dim, value * gelu(gate), back to dim.
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  Linear proj{nullptr}, out{nullptr};  // registered as net.0.proj and net.2
};
TORCH_MODULE(FeedForward);

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t context_dim);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

struct Transformer2DOptions {
  int64_t channels = 0, heads = 8, context_dim = 768, groups = 32, depth = 1;
  bool linear_projection = false;  // SD 2.x: Linear proj_in/out over tokens; SD 1.x: 1x1 convs
};

class Transformer2DImpl : public torch::nn::Module {
 public:
  explicit Transformer2DImpl(const Transformer2DOptions& o);
  // x [B, C, H, W], context [B, L, context_dim] -> [B, C, H, W] (residual included).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::AnyModule proj_in, proj_out;  // Conv2d 1x1 or Linear
  torch::nn::ModuleList transformer_blocks{nullptr};

 private:
  bool linear_projection_;
};
TORCH_MODULE(Transformer2D);

// The VAE's mid-block attention: one head of width C over the H x W pixels, residual added.
class SpatialAttentionImpl : public torch::nn::Module {
 public:
  SpatialAttentionImpl(int64_t channels, int64_t groups, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};
};
TORCH_MODULE(SpatialAttention);

}  // namespace facet::models::generative
