#include "models/generative/unet2d_condition.h"

#include "core/error.h"

#include <cmath>

namespace facet::models::generative {

UNet2DConditionOptions UNet2DConditionOptions::sd15() { return {}; }

namespace {

// diffusers' block type names <-> whether the block has cross-attention.
std::vector<bool> attention_flags(const Config& c, const std::string& key, const std::string& with, const std::string& without) {
  std::vector<bool> flags;
  for (const auto& type : c.get<std::vector<std::string>>(key)) {
    if (type == with) flags.push_back(true);
    else if (type == without) flags.push_back(false);
    else fail("{}: {}: unknown block type '{}' ({} or {})", c.where(key), c.full_key(key), type, with, without);
  }
  return flags;
}

}  // namespace

UNet2DConditionOptions UNet2DConditionOptions::from(const Config& c) {
  const auto preset = c.get<std::string>("preset", "sd15");
  if (preset != "sd15") fail("{}: {}: unknown UNet preset '{}' (sd15)", c.where("preset"), c.full_key("preset"), preset);
  UNet2DConditionOptions o = sd15();
  o.in_channels = c.get_in_range<int64_t>("in_channels", o.in_channels, Range::at_least(1));
  o.out_channels = c.get_in_range<int64_t>("out_channels", o.out_channels, Range::at_least(1));
  o.sample_size = c.get_in_range<int64_t>("sample_size", o.sample_size, Range::at_least(1));
  o.block_out_channels = c.get<std::vector<int64_t>>("block_out_channels", o.block_out_channels);
  if (c.has("down_block_types")) o.cross_attention = attention_flags(c, "down_block_types", "CrossAttnDownBlock2D", "DownBlock2D");
  else if (c.has("block_out_channels") && o.cross_attention.size() != o.block_out_channels.size()) {
    // SD's pattern for any depth: attention everywhere but the deepest block.
    o.cross_attention.assign(o.block_out_channels.size(), true);
    o.cross_attention.back() = false;
  }
  if (c.has("up_block_types")) {
    auto up = attention_flags(c, "up_block_types", "CrossAttnUpBlock2D", "UpBlock2D");
    std::reverse(up.begin(), up.end());
    if (up != o.cross_attention)
      fail("{}: {}: the up blocks must mirror down_block_types (cross-attention where the matching down block has it)",
           c.where("up_block_types"), c.full_key("up_block_types"));
  }
  o.layers_per_block = c.get_in_range<int64_t>("layers_per_block", o.layers_per_block, Range::at_least(1));
  const char* heads_key = c.has("attention_head_dim") ? "attention_head_dim" : "attention_heads";
  if (c.has(heads_key)) {
    const Config node = c.at(heads_key);
    o.attention_heads = node.is_list() ? c.get<std::vector<int64_t>>(heads_key) : std::vector<int64_t>{c.get<int64_t>(heads_key)};
  }
  o.cross_attention_dim = c.get_in_range<int64_t>("cross_attention_dim", o.cross_attention_dim, Range::at_least(1));
  o.norm_num_groups = c.get_in_range<int64_t>("norm_num_groups", o.norm_num_groups, Range::at_least(1));
  o.norm_eps = c.get_in_range<double>("norm_eps", o.norm_eps, Range::above(0));
  o.transformer_layers_per_block = c.get_in_range<int64_t>("transformer_layers_per_block", o.transformer_layers_per_block, Range::at_least(1));
  o.use_linear_projection = c.get<bool>("use_linear_projection", o.use_linear_projection);
  o.flip_sin_to_cos = c.get<bool>("flip_sin_to_cos", o.flip_sin_to_cos);
  o.freq_shift = c.get_finite<double>("freq_shift", o.freq_shift);
  o.validate(c.where() + ": " + (c.prefix().empty() ? std::string("unet") : c.prefix()));
  return o;
}

void UNet2DConditionOptions::validate(const std::string& where) const {
  if (block_out_channels.empty()) fail("{}: block_out_channels is empty", where);
  if (cross_attention.size() != block_out_channels.size())
    fail("{}: {} block types for {} block_out_channels", where, cross_attention.size(), block_out_channels.size());
  if (attention_heads.size() != 1 && attention_heads.size() != block_out_channels.size())
    fail("{}: attention_head_dim has {} values for {} blocks (give one, or one per block)", where, attention_heads.size(),
         block_out_channels.size());
  for (size_t i = 0; i < block_out_channels.size(); ++i) {
    const int64_t ch = block_out_channels[i];
    if (ch <= 0 || ch % norm_num_groups != 0)
      fail("{}: block_out_channels[{}] = {} is not a positive multiple of norm_num_groups {}", where, i, ch, norm_num_groups);
    if (heads(i) <= 0 || ch % heads(i) != 0) fail("{}: block {} has {} channels, not a multiple of {} heads", where, i, ch, heads(i));
  }
  if (block_out_channels[0] % 2 != 0) fail("{}: block_out_channels[0] must be even (the timestep sinusoids)", where);
}

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double shift) {
  const int64_t half = dim / 2;
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(timesteps.device());
  const torch::Tensor exponent = torch::arange(half, options) * (-std::log(10000.0) / (static_cast<double>(half) - shift));
  const torch::Tensor angles = timesteps.reshape({-1, 1}).to(torch::kFloat) * exponent.exp().unsqueeze(0);
  return flip_sin_to_cos ? torch::cat({angles.cos(), angles.sin()}, -1) : torch::cat({angles.sin(), angles.cos()}, -1);
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t out) {
  linear_1 = register_module("linear_1", Linear(in, out));
  linear_2 = register_module("linear_2", Linear(out, out));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& x) { return linear_2(torch::silu(linear_1(x))); }

namespace {

ResnetBlock2D unet_resnet(const UNet2DConditionOptions& o, int64_t in, int64_t out) {
  return ResnetBlock2D(ResnetBlockOptions{.in_channels = in, .out_channels = out, .temb_channels = o.time_embed_dim(),
                                          .groups = o.norm_num_groups, .eps = o.norm_eps});
}

Transformer2D unet_transformer(const UNet2DConditionOptions& o, int64_t channels, int64_t heads) {
  return Transformer2D(Transformer2DOptions{.channels = channels, .heads = heads, .context_dim = o.cross_attention_dim,
                                            .groups = o.norm_num_groups, .depth = o.transformer_layers_per_block,
                                            .linear_projection = o.use_linear_projection});
}

}  // namespace

UNetMidBlockImpl::UNetMidBlockImpl(const UNet2DConditionOptions& o) {
  const int64_t ch = o.block_out_channels.back();
  resnets = register_module("resnets", torch::nn::ModuleList(unet_resnet(o, ch, ch), unet_resnet(o, ch, ch)));
  attentions = register_module("attentions", torch::nn::ModuleList(unet_transformer(o, ch, o.heads(o.block_out_channels.size() - 1))));
}

torch::Tensor UNetMidBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb, const torch::Tensor& context) {
  torch::Tensor h = resnets[0]->as<ResnetBlock2D>()->forward(x, temb);
  h = attentions[0]->as<Transformer2D>()->forward(h, context);
  return resnets[1]->as<ResnetBlock2D>()->forward(h, temb);
}

UNet2DConditionImpl::UNet2DConditionImpl(UNet2DConditionOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  o.validate("unet");
  const auto& ch = o.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", conv2d(o.in_channels, ch[0], 3, 1, 1));
  time_embedding = register_module("time_embedding", TimestepEmbedding(ch[0], o.time_embed_dim()));

  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = out;
    out = ch[i];
    UNetBlock block;
    block->resnets = block->register_module("resnets", torch::nn::ModuleList());
    if (o.cross_attention[i]) block->attentions = block->register_module("attentions", torch::nn::ModuleList());
    for (int64_t j = 0; j < o.layers_per_block; ++j) {
      block->resnets->push_back(unet_resnet(o, j == 0 ? in : out, out));
      if (o.cross_attention[i]) block->attentions->push_back(unet_transformer(o, out, o.heads(i)));
    }
    if (i + 1 < n) block->downsamplers = block->register_module("downsamplers", torch::nn::ModuleList(Downsample2D(out, 1)));
    down_blocks->push_back(block);
  }

  mid_block = register_module("mid_block", UNetMidBlock(o));

  // Up block i mirrors down block n-1-i; its resnet j takes the previous output concatenated with
  // a skip: the down block's outputs in reverse, the last one from the block below it.
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t mirror = n - 1 - i;
    const int64_t prev = out;
    out = ch[mirror];
    const int64_t skip_in = ch[mirror == 0 ? 0 : mirror - 1];
    UNetBlock block;
    block->resnets = block->register_module("resnets", torch::nn::ModuleList());
    if (o.cross_attention[mirror]) block->attentions = block->register_module("attentions", torch::nn::ModuleList());
    for (int64_t j = 0; j <= o.layers_per_block; ++j) {
      const int64_t skip = j == o.layers_per_block ? skip_in : out;
      block->resnets->push_back(unet_resnet(o, (j == 0 ? prev : out) + skip, out));
      if (o.cross_attention[mirror]) block->attentions->push_back(unet_transformer(o, out, o.heads(mirror)));
    }
    if (i + 1 < n) block->upsamplers = block->register_module("upsamplers", torch::nn::ModuleList(Upsample2D(out)));
    up_blocks->push_back(block);
  }

  conv_norm_out = register_module("conv_norm_out", group_norm(o.norm_num_groups, ch[0], o.norm_eps));
  conv_out = register_module("conv_out", conv2d(ch[0], o.out_channels, 3, 1, 1));
}

torch::Tensor UNet2DConditionImpl::forward(const torch::Tensor& sample, const torch::Tensor& timesteps, const torch::Tensor& context) {
  const auto& o = options_;
  const int64_t b = sample.size(0);
  torch::Tensor t = timesteps.dim() == 0 ? timesteps.reshape({1}).expand({b}) : timesteps;
  if (t.size(0) != b) fail("unet: {} timesteps for a batch of {}", t.size(0), b);
  const torch::Tensor temb =
      time_embedding(timestep_embedding(t, o.block_out_channels[0], o.flip_sin_to_cos, o.freq_shift).to(sample.scalar_type()));

  torch::Tensor h = conv_in(sample);
  std::vector<torch::Tensor> skips{h};
  for (const auto& m : *down_blocks) {
    auto& block = *m->as<UNetBlockImpl>();
    for (size_t j = 0; j < block.resnets->size(); ++j) {
      h = block.resnets[j]->as<ResnetBlock2D>()->forward(h, temb);
      if (block.attentions) h = block.attentions[j]->as<Transformer2D>()->forward(h, context);
      skips.push_back(h);
    }
    if (block.downsamplers) {
      h = block.downsamplers[0]->as<Downsample2D>()->forward(h);
      skips.push_back(h);
    }
  }

  h = mid_block(h, temb, context);

  for (const auto& m : *up_blocks) {
    auto& block = *m->as<UNetBlockImpl>();
    for (size_t j = 0; j < block.resnets->size(); ++j) {
      h = block.resnets[j]->as<ResnetBlock2D>()->forward(torch::cat({h, skips.back()}, 1), temb);
      skips.pop_back();
      if (block.attentions) h = block.attentions[j]->as<Transformer2D>()->forward(h, context);
    }
    if (block.upsamplers) {
      const auto& next = skips.back();  // the resolution the next block works at
      h = block.upsamplers[0]->as<Upsample2D>()->forward(h, std::vector<int64_t>{next.size(2), next.size(3)});
    }
  }
  return conv_out(torch::silu(conv_norm_out(h)));
}

}  // namespace facet::models::generative
