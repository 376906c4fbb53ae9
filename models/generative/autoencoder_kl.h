// The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022) in diffusers'
// AutoencoderKL layout, so Stable Diffusion's `vae/diffusion_pytorch_model.safetensors` loads by
// name (either generation of mid-block attention names: the converter `diffusers_vae` renames the
// old query/key/value/proj_attn; the original single-file checkpoints: `sd_single_file`). Images in [-1, 1] <-> latents 8x smaller with 4 channels; latent
// diffusion trains on `sample * scaling_factor` (0.18215 for SD 1.x).
//
// SD 1.x (preset sd): channels 128/256/512/512, 2 resnets per encoder block (3 per decoder block),
// one-head attention in the mid blocks only, GroupNorm(32, eps 1e-6): 83,653,863 parameters.
#pragma once

#include "core/config.h"
#include "models/generative/blocks.h"

#include <torch/torch.h>

#include <vector>

namespace facet::models::generative {

struct AutoencoderKLOptions {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> block_out_channels{128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;

  static AutoencoderKLOptions sd();
  // `preset: sd` (the default) then the keys above (diffusers' config.json names).
  static AutoencoderKLOptions from(const Config& c);
  // Pixels per latent along each side.
  int64_t downscale() const { return int64_t{1} << (block_out_channels.size() - 1); }
  void validate(const std::string& where) const;
};

// Encoder and decoder mid block: resnet, attention, resnet (no timestep).
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// A down (encoder) or up (decoder) block: resnets, then its resampler.
class VaeBlockImpl : public torch::nn::Module {
 public:
  torch::nn::ModuleList resnets{nullptr}, downsamplers{nullptr}, upsamplers{nullptr};
};
TORCH_MODULE(VaeBlock);

class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const AutoencoderKLOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // [B, 2 x latent, H/f, W/f]: mean and log-variance
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks{nullptr};
  VaeMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const AutoencoderKLOptions& o);
  torch::Tensor forward(const torch::Tensor& z);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up_blocks{nullptr};
  VaeMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

// The posterior: a diagonal Gaussian per latent element (log-variance clamped to [-30, 20]).
struct LatentDistribution {
  torch::Tensor mean, logvar;
  torch::Tensor std() const { return (0.5 * logvar).exp(); }
  // mean + std * N(0, 1), drawn from the current (thread's) generator.
  torch::Tensor sample() const { return mean + std() * torch::randn_like(mean); }
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(AutoencoderKLOptions options);

  LatentDistribution encode(const torch::Tensor& images);  // images [B, C, H, W] in [-1, 1]
  torch::Tensor decode(const torch::Tensor& latents);      // unscaled latents -> images in about [-1, 1]

  const AutoencoderKLOptions& options() const { return options_; }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  AutoencoderKLOptions options_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace facet::models::generative
