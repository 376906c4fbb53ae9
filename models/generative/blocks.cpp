#include "models/generative/blocks.h"

#include "core/error.h"

namespace facet::models::generative {

namespace F = torch::nn::functional;

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps) {
  torch::nn::GroupNorm m(torch::nn::GroupNormOptions(groups, channels).eps(eps));
  to_scope(*m);
  return m;
}

torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  torch::nn::Conv2d m(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
  to_scope(*m);
  return m;
}

ResnetBlock2DImpl::ResnetBlock2DImpl(const ResnetBlockOptions& o) {
  norm1 = register_module("norm1", group_norm(o.groups, o.in_channels, o.eps));
  conv1 = register_module("conv1", conv2d(o.in_channels, o.out_channels, 3, 1, 1));
  if (o.temb_channels > 0) time_emb_proj = register_module("time_emb_proj", Linear(o.temb_channels, o.out_channels));
  norm2 = register_module("norm2", group_norm(o.groups, o.out_channels, o.eps));
  conv2 = register_module("conv2", conv2d(o.out_channels, o.out_channels, 3, 1, 1));
  if (o.in_channels != o.out_channels) conv_shortcut = register_module("conv_shortcut", conv2d(o.in_channels, o.out_channels, 1));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  torch::Tensor h = conv1(torch::silu(norm1(x)));
  if (time_emb_proj) {
    if (!temb.defined()) fail("ResnetBlock2D: this block takes a timestep embedding");
    h = h + time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2(torch::silu(norm2(h)));  // dropout 0 in every published configuration
  return (conv_shortcut ? conv_shortcut(x) : x) + h;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding) : padding_(padding) {
  conv = register_module("conv", conv2d(channels, channels, 3, 2, padding));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  // The VAE (LDM's Downsample with_conv) pads asymmetrically so an even input halves exactly.
  return conv(padding_ == 0 ? F::pad(x, F::PadFuncOptions({0, 1, 0, 1})) : x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) { conv = register_module("conv", conv2d(channels, channels, 3, 1, 1)); }

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, std::optional<std::vector<int64_t>> size) {
  auto options = F::InterpolateFuncOptions().mode(torch::kNearest);
  if (size) options.size(*size);
  else options.scale_factor(std::vector<double>{2.0, 2.0});
  return conv(F::interpolate(x, options));
}

namespace {

// to_out as diffusers registers it: a Linear, then a Dropout (index 1, no parameters).
torch::nn::ModuleList output_projection(int64_t inner, int64_t dim) {
  torch::nn::ModuleList list;
  list->push_back(Linear(inner, dim));
  list->push_back(torch::nn::Dropout(0.0));
  return list;
}

// [B, L, heads * d] -> [B, heads, L, d]
torch::Tensor split_heads(const torch::Tensor& t, int64_t heads) {
  return t.view({t.size(0), t.size(1), heads, t.size(2) / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& t) {
  return t.transpose(1, 2).reshape({t.size(0), t.size(2), t.size(1) * t.size(3)});
}

}  // namespace

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, int64_t context_dim, bool qkv_bias) : heads_(heads) {
  if (heads <= 0 || dim % heads != 0) fail("Attention: width {} is not a multiple of {} heads", dim, heads);
  to_q = register_module("to_q", Linear(LinearOptions(dim, dim).bias(qkv_bias)));
  to_k = register_module("to_k", Linear(LinearOptions(context_dim, dim).bias(qkv_bias)));
  to_v = register_module("to_v", Linear(LinearOptions(context_dim, dim).bias(qkv_bias)));
  to_out = register_module("to_out", output_projection(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const torch::Tensor& kv = context.defined() ? context : x;
  torch::Tensor k = to_k(kv), v = to_v(kv);
  if (freeze_start_token_kv && context.defined()) {
    k = torch::cat({k.slice(1, 0, 1).detach(), k.slice(1, 1)}, 1);
    v = torch::cat({v.slice(1, 0, 1).detach(), v.slice(1, 1)}, 1);
  }
  const torch::Tensor out = at::scaled_dot_product_attention(split_heads(to_q(x), heads_), split_heads(k, heads_), split_heads(v, heads_));
  return to_out[0]->as<Linear>()->forward(merge_heads(out));
}

FeedForwardImpl::FeedForwardImpl(int64_t dim) {
  // Registered under the names of diffusers' FeedForward: net = [GEGLU(proj), Dropout, Linear].
  torch::nn::ModuleList net;
  auto geglu = std::make_shared<torch::nn::Module>();
  proj = geglu->register_module("proj", Linear(dim, 2 * 4 * dim));
  net->push_back(geglu);
  net->push_back(torch::nn::Dropout(0.0));
  out = Linear(4 * dim, dim);
  net->push_back(out);
  register_module("net", net);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  const auto parts = proj(x).chunk(2, -1);
  return out(parts[0] * torch::gelu(parts[1]));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t context_dim) {
  auto layer_norm = [&] {
    torch::nn::LayerNorm m(torch::nn::LayerNormOptions({dim}).eps(1e-5));
    to_scope(*m);
    return m;
  };
  norm1 = register_module("norm1", layer_norm());
  attn1 = register_module("attn1", Attention(dim, heads, dim, false));
  norm2 = register_module("norm2", layer_norm());
  attn2 = register_module("attn2", Attention(dim, heads, context_dim, false));
  norm3 = register_module("norm3", layer_norm());
  ff = register_module("ff", FeedForward(dim));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  torch::Tensor h = x + attn1(norm1(x));
  h = h + attn2(norm2(h), context);
  return h + ff(norm3(h));
}

Transformer2DImpl::Transformer2DImpl(const Transformer2DOptions& o) : linear_projection_(o.linear_projection) {
  if (o.heads <= 0 || o.channels % o.heads != 0) fail("Transformer2D: {} channels are not a multiple of {} heads", o.channels, o.heads);
  norm = register_module("norm", group_norm(o.groups, o.channels, 1e-6));
  if (o.linear_projection) {
    proj_in = torch::nn::AnyModule(Linear(o.channels, o.channels));
    proj_out = torch::nn::AnyModule(Linear(o.channels, o.channels));
  } else {
    proj_in = torch::nn::AnyModule(conv2d(o.channels, o.channels, 1));
    proj_out = torch::nn::AnyModule(conv2d(o.channels, o.channels, 1));
  }
  register_module("proj_in", proj_in.ptr());
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth; ++i) transformer_blocks->push_back(BasicTransformerBlock(o.channels, o.heads, o.context_dim));
  register_module("proj_out", proj_out.ptr());
}

torch::Tensor Transformer2DImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  torch::Tensor t = norm(x);
  auto to_tokens = [&](const torch::Tensor& m) { return m.permute({0, 2, 3, 1}).reshape({b, h * w, c}); };
  auto to_map = [&](const torch::Tensor& s) { return s.reshape({b, h, w, c}).permute({0, 3, 1, 2}); };
  t = linear_projection_ ? proj_in.forward(to_tokens(t)) : to_tokens(proj_in.forward(t));
  for (const auto& block : *transformer_blocks) t = block->as<BasicTransformerBlock>()->forward(t, context);
  t = linear_projection_ ? to_map(proj_out.forward(t)) : proj_out.forward(to_map(t).contiguous());
  return t + x;
}

SpatialAttentionImpl::SpatialAttentionImpl(int64_t channels, int64_t groups, double eps) {
  group_norm = register_module("group_norm", generative::group_norm(groups, channels, eps));
  to_q = register_module("to_q", Linear(channels, channels));
  to_k = register_module("to_k", Linear(channels, channels));
  to_v = register_module("to_v", Linear(channels, channels));
  to_out = register_module("to_out", output_projection(channels, channels));
}

torch::Tensor SpatialAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const torch::Tensor t = group_norm(x).view({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
  const torch::Tensor out = at::scaled_dot_product_attention(to_q(t).unsqueeze(1), to_k(t).unsqueeze(1), to_v(t).unsqueeze(1));
  const torch::Tensor y = to_out[0]->as<Linear>()->forward(out.squeeze(1));
  return y.transpose(1, 2).reshape({b, c, h, w}) + x;
}

}  // namespace facet::models::generative
