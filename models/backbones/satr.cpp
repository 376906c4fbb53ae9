#include "models/backbones/satr.h"

#include "core/error.h"
#include "models/layers/drop_path.h"

namespace facet::models {
namespace nn = torch::nn;

SliceTokensImpl::SliceTokensImpl(int64_t channels, int64_t num_slices, int64_t patch, const SATrOptions& o)
    : num_slices_(num_slices), patch_(patch) {
  for (int64_t n = 1; n <= num_slices; ++n) {
    project_.push_back(register_module(fmt::format("conv_project{}", n), nn::Conv2d(nn::Conv2dOptions(channels, o.embed_dim, 1))));
    norm_.push_back(register_module(fmt::format("ln{}", n), nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.ln_eps))));
  }
}

torch::Tensor SliceTokensImpl::forward(const torch::Tensor& x, const torch::Tensor& global_tokens) {
  const int64_t mid = num_slices_ / 2;
  const auto cls = global_tokens.narrow(1, 0, 1);
  std::vector<torch::Tensor> slices;
  for (int64_t n = 0; n < num_slices_; ++n) {
    auto t = project_[static_cast<size_t>(n)]->forward(x.select(2, n));
    t = torch::avg_pool2d(t, {patch_, patch_}, {patch_, patch_}).flatten(2).transpose(1, 2);
    t = torch::gelu(norm_[static_cast<size_t>(n)]->forward(t));
    t = torch::cat({cls, t}, 1);
    if (n == mid) t = t + global_tokens;  // only the key slice sees the whole-volume tokens
    slices.push_back(t);
  }
  return torch::stack(slices, 1);
}

SliceAttentionImpl::SliceAttentionImpl(int64_t num_slices, const SATrOptions& o)
    : num_slices_(num_slices), num_heads_(o.num_heads) {
  if (o.embed_dim % o.num_heads != 0) fail("SATr: embed_dim {} is not divisible by num_heads {}", o.embed_dim, o.num_heads);
  qk = register_module("qk", nn::Linear(o.embed_dim * (num_slices - 1), 2 * o.embed_dim));
  v = register_module("v", nn::Linear(o.embed_dim, o.embed_dim));
  proj = register_module("proj", nn::Linear(o.embed_dim, o.embed_dim));
}

torch::Tensor SliceAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), s = x.size(1), n = x.size(2), d = x.size(3), mid = s / 2, dh = d / num_heads_;
  std::vector<int64_t> others;
  for (int64_t i = 0; i < s; ++i)
    if (i != mid) others.push_back(i);
  // Q and K per token position from the neighbours' tokens side by side (slice-major channels).
  const auto neighbours = x.index_select(1, torch::tensor(others, torch::TensorOptions().dtype(torch::kLong).device(x.device())));
  const auto qk_heads = qk(neighbours.permute({0, 2, 1, 3}).reshape({b, n, (s - 1) * d}))
                           .reshape({b, n, 2, num_heads_, dh})
                           .permute({2, 0, 3, 1, 4})
                           .unbind(0);  // 2 x [B, heads, N, dh]; unbind's backward stacks once (see ViT)
  const auto values = v(x.select(1, mid)).reshape({b, n, num_heads_, dh}).transpose(1, 2);
  const auto y = at::scaled_dot_product_attention(qk_heads[0], qk_heads[1], values);
  return proj(y.transpose(1, 2).reshape({b, n, d}));
}

SliceAttentionBlockImpl::SliceAttentionBlockImpl(int64_t num_slices, const SATrOptions& o) : drop_path_(o.drop_path) {
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.ln_eps)));
  attn = register_module("attn", SliceAttention(num_slices, o));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.ln_eps)));
  auto mlp = std::make_shared<nn::Module>();
  const auto hidden = static_cast<int64_t>(static_cast<double>(o.embed_dim) * o.mlp_ratio);
  fc1 = mlp->register_module("fc1", nn::Linear(o.embed_dim, hidden));
  fc2 = mlp->register_module("fc2", nn::Linear(hidden, o.embed_dim));
  register_module("mlp", mlp);
}

torch::Tensor SliceAttentionBlockImpl::forward(const torch::Tensor& x) {
  // The residual is the key slice's tokens before normalisation, as released.
  auto y = x.select(1, x.size(1) / 2) + drop_path(attn(norm1(x)), drop_path_, is_training());
  return y + drop_path(fc2(torch::gelu(fc1(norm2(y)))), drop_path_, is_training());
}

TokenExpandImpl::TokenExpandImpl(int64_t channels, int64_t patch, const SATrOptions& o) : patch_(patch) {
  conv_project = register_module("conv_project", nn::Conv2d(nn::Conv2dOptions(o.embed_dim, channels, 1)));
  bn = register_module("bn", nn::BatchNorm2d(nn::BatchNormOptions(channels).eps(o.bn_eps)));
}

torch::Tensor TokenExpandImpl::forward(const torch::Tensor& tokens, int64_t h, int64_t w) {
  const int64_t b = tokens.size(0), d = tokens.size(2);
  auto y = tokens.narrow(1, 1, tokens.size(1) - 1).transpose(1, 2).reshape({b, d, h, w});
  y = torch::relu(bn(conv_project(y)));
  namespace F = torch::nn::functional;
  return F::interpolate(y, F::InterpolateFuncOptions().size(std::vector<int64_t>{h * patch_, w * patch_}).mode(torch::kNearest));
}

SATrFusionImpl::SATrFusionImpl(int64_t channels, const SATrOptions& o) {
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(channels, channels, 1).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(nn::BatchNormOptions(channels).eps(o.bn_eps)));
}

torch::Tensor SATrFusionImpl::forward(const torch::Tensor& reduced, const torch::Tensor& expanded) {
  return reduced + torch::relu(bn1(conv1(reduced + expanded)));
}

}  // namespace facet::models
