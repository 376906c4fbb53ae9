#include "models/generative/autoencoder_kl.h"

#include "core/error.h"

namespace facet::models::generative {

namespace {
constexpr double kEps = 1e-6;  // every VAE norm

ResnetBlock2D vae_resnet(const AutoencoderKLOptions& o, int64_t in, int64_t out) {
  return ResnetBlock2D(ResnetBlockOptions{.in_channels = in, .out_channels = out, .groups = o.norm_num_groups, .eps = kEps});
}
}  // namespace

AutoencoderKLOptions AutoencoderKLOptions::sd() { return {}; }

AutoencoderKLOptions AutoencoderKLOptions::from(const Config& c) {
  const auto preset = c.get<std::string>("preset", "sd");
  if (preset != "sd") fail("{}: {}: unknown VAE preset '{}' (sd)", c.where("preset"), c.full_key("preset"), preset);
  AutoencoderKLOptions o = sd();
  o.in_channels = c.get_in_range<int64_t>("in_channels", o.in_channels, Range::at_least(1));
  o.out_channels = c.get_in_range<int64_t>("out_channels", o.out_channels, Range::at_least(1));
  o.latent_channels = c.get_in_range<int64_t>("latent_channels", o.latent_channels, Range::at_least(1));
  o.block_out_channels = c.get<std::vector<int64_t>>("block_out_channels", o.block_out_channels);
  o.layers_per_block = c.get_in_range<int64_t>("layers_per_block", o.layers_per_block, Range::at_least(1));
  o.norm_num_groups = c.get_in_range<int64_t>("norm_num_groups", o.norm_num_groups, Range::at_least(1));
  o.scaling_factor = c.get_in_range<double>("scaling_factor", o.scaling_factor, Range::above(0));
  o.validate(c.where() + ": " + (c.prefix().empty() ? std::string("vae") : c.prefix()));
  return o;
}

void AutoencoderKLOptions::validate(const std::string& where) const {
  if (block_out_channels.empty()) fail("{}: block_out_channels is empty", where);
  for (size_t i = 0; i < block_out_channels.size(); ++i)
    if (block_out_channels[i] <= 0 || block_out_channels[i] % norm_num_groups != 0)
      fail("{}: block_out_channels[{}] = {} is not a positive multiple of norm_num_groups {}", where, i, block_out_channels[i],
           norm_num_groups);
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups) {
  auto res = [&] {
    return ResnetBlock2D(ResnetBlockOptions{.in_channels = channels, .out_channels = channels, .groups = groups, .eps = kEps});
  };
  resnets = register_module("resnets", torch::nn::ModuleList(res(), res()));
  attentions = register_module("attentions", torch::nn::ModuleList(SpatialAttention(channels, groups, kEps)));
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = resnets[0]->as<ResnetBlock2D>()->forward(x);
  h = attentions[0]->as<SpatialAttention>()->forward(h);
  return resnets[1]->as<ResnetBlock2D>()->forward(h);
}

VaeEncoderImpl::VaeEncoderImpl(const AutoencoderKLOptions& o) {
  const auto& ch = o.block_out_channels;
  conv_in = register_module("conv_in", conv2d(o.in_channels, ch[0], 3, 1, 1));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out = ch[0];
  for (size_t i = 0; i < ch.size(); ++i) {
    const int64_t in = out;
    out = ch[i];
    VaeBlock block;
    block->resnets = block->register_module("resnets", torch::nn::ModuleList());
    for (int64_t j = 0; j < o.layers_per_block; ++j) block->resnets->push_back(vae_resnet(o, j == 0 ? in : out, out));
    if (i + 1 < ch.size()) block->downsamplers = block->register_module("downsamplers", torch::nn::ModuleList(Downsample2D(out, 0)));
    down_blocks->push_back(block);
  }
  mid_block = register_module("mid_block", VaeMidBlock(ch.back(), o.norm_num_groups));
  conv_norm_out = register_module("conv_norm_out", group_norm(o.norm_num_groups, ch.back(), kEps));
  conv_out = register_module("conv_out", conv2d(ch.back(), 2 * o.latent_channels, 3, 1, 1));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in(x);
  for (const auto& m : *down_blocks) {
    auto& block = *m->as<VaeBlockImpl>();
    for (const auto& r : *block.resnets) h = r->as<ResnetBlock2D>()->forward(h);
    if (block.downsamplers) h = block.downsamplers[0]->as<Downsample2D>()->forward(h);
  }
  h = mid_block(h);
  return conv_out(torch::silu(conv_norm_out(h)));
}

VaeDecoderImpl::VaeDecoderImpl(const AutoencoderKLOptions& o) {
  const auto& ch = o.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", conv2d(o.latent_channels, ch[n - 1], 3, 1, 1));
  mid_block = register_module("mid_block", VaeMidBlock(ch[n - 1], o.norm_num_groups));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  int64_t out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = out;
    out = ch[n - 1 - i];
    VaeBlock block;
    block->resnets = block->register_module("resnets", torch::nn::ModuleList());
    for (int64_t j = 0; j <= o.layers_per_block; ++j) block->resnets->push_back(vae_resnet(o, j == 0 ? in : out, out));
    if (i + 1 < n) block->upsamplers = block->register_module("upsamplers", torch::nn::ModuleList(Upsample2D(out)));
    up_blocks->push_back(block);
  }
  conv_norm_out = register_module("conv_norm_out", group_norm(o.norm_num_groups, ch[0], kEps));
  conv_out = register_module("conv_out", conv2d(ch[0], o.out_channels, 3, 1, 1));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_block(conv_in(z));
  for (const auto& m : *up_blocks) {
    auto& block = *m->as<VaeBlockImpl>();
    for (const auto& r : *block.resnets) h = r->as<ResnetBlock2D>()->forward(h);
    if (block.upsamplers) h = block.upsamplers[0]->as<Upsample2D>()->forward(h);
  }
  return conv_out(torch::silu(conv_norm_out(h)));
}

AutoencoderKLImpl::AutoencoderKLImpl(AutoencoderKLOptions options) : options_(std::move(options)) {
  options_.validate("vae");
  encoder = register_module("encoder", VaeEncoder(options_));
  decoder = register_module("decoder", VaeDecoder(options_));
  const int64_t z = options_.latent_channels;
  quant_conv = register_module("quant_conv", conv2d(2 * z, 2 * z, 1));
  post_quant_conv = register_module("post_quant_conv", conv2d(z, z, 1));
}

LatentDistribution AutoencoderKLImpl::encode(const torch::Tensor& images) {
  const auto moments = quant_conv(encoder(images)).chunk(2, 1);
  return {moments[0], moments[1].clamp(-30.0, 20.0)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) { return decoder(post_quant_conv(latents)); }

}  // namespace facet::models::generative
