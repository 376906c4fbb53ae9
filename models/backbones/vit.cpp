#include "models/backbones/vit.h"

#include <cmath>
#include <map>
#include <regex>

namespace facet::models {
namespace nn = torch::nn;

ViTOptions ViTOptions::from(const Config& c) {
  ViTOptions o;
  o.image_size = c.get<int64_t>("image_size", o.image_size);
  o.patch_size = c.get<int64_t>("patch_size", o.patch_size);
  o.in_channels = c.get<int64_t>("in_channels", o.in_channels);
  o.embed_dim = c.get<int64_t>("embed_dim", o.embed_dim);
  o.depth = c.get<int64_t>("depth", o.depth);
  o.num_heads = c.get<int64_t>("num_heads", o.num_heads);
  o.mlp_ratio = c.get<double>("mlp_ratio", o.mlp_ratio);
  o.qkv_bias = c.get<bool>("qkv_bias", o.qkv_bias);
  o.norm_eps = c.get<double>("norm_eps", o.norm_eps);
  o.drop_path = c.get<double>("drop_path", o.drop_path);
  o.sincos_pos_embed = c.get<bool>("sincos_pos_embed", o.sincos_pos_embed);
  if (o.patch_size <= 0 || o.image_size % o.patch_size != 0)
    fail("{}: {} {} is not a multiple of patch_size {}", c.where("image_size"), c.full_key("image_size"), o.image_size, o.patch_size);
  if (o.num_heads <= 0 || o.embed_dim % o.num_heads != 0)
    fail("{}: {} {} is not a multiple of num_heads {}", c.where("embed_dim"), c.full_key("embed_dim"), o.embed_dim, o.num_heads);
  if (o.depth < 1) fail("{}: {}: expected >= 1, got {}", c.where("depth"), c.full_key("depth"), o.depth);
  if (o.drop_path < 0 || o.drop_path >= 1) fail("{}: {}: expected [0, 1)", c.where("drop_path"), c.full_key("drop_path"));
  return o;
}

namespace {

nn::Linear linear(int64_t in, int64_t out, bool bias = true) {
  nn::Linear l(nn::LinearOptions(in, out).bias(bias));
  nn::init::xavier_uniform_(l->weight);  // MAE / timm initialisation
  if (bias) nn::init::zeros_(l->bias);
  return l;
}

// Stochastic depth: drop the residual branch per sample with probability p, rescaling the rest.
torch::Tensor drop_path(const torch::Tensor& branch, double p, bool training) {
  if (!training || p == 0) return branch;
  const double keep = 1 - p;
  std::vector<int64_t> shape(static_cast<size_t>(branch.dim()), 1);
  shape[0] = branch.size(0);
  return branch * torch::empty(shape, branch.options()).bernoulli_(keep).div_(keep);
}

// Holds the patch projection under the name `proj`, so parameters read patch_embed.proj.*.
struct PatchEmbedImpl : nn::Module {
  explicit PatchEmbedImpl(nn::Conv2d conv) { proj = register_module("proj", conv); }
  nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

}  // namespace

ViTAttentionImpl::ViTAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias) : heads_(heads) {
  qkv = register_module("qkv", linear(dim, 3 * dim, qkv_bias));
  proj = register_module("proj", linear(dim, dim));
}

torch::Tensor ViTAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2);
  const auto qkv_heads = qkv(x).view({b, l, 3, heads_, d / heads_}).permute({2, 0, 3, 1, 4});  // [3, B, H, L, Dh]
  const auto out = at::scaled_dot_product_attention(qkv_heads[0], qkv_heads[1], qkv_heads[2]);
  return proj(out.transpose(1, 2).reshape({b, l, d}));
}

ViTMlpImpl::ViTMlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", linear(dim, hidden));
  fc2 = register_module("fc2", linear(hidden, dim));
}

ViTBlockImpl::ViTBlockImpl(const ViTOptions& o, double drop_path) : drop_path_(drop_path) {
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.norm_eps)));
  attn = register_module("attn", ViTAttention(o.embed_dim, o.num_heads, o.qkv_bias));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.norm_eps)));
  mlp = register_module("mlp", ViTMlp(o.embed_dim, static_cast<int64_t>(std::lround(o.embed_dim * o.mlp_ratio))));
}

torch::Tensor ViTBlockImpl::forward(const torch::Tensor& x) {
  auto h = x + drop_path(attn(norm1(x)), drop_path_, is_training());
  return h + drop_path(mlp(norm2(h)), drop_path_, is_training());
}

torch::Tensor sincos_position_table(int64_t dim, int64_t grid) {
  if (dim % 4 != 0) fail("sin-cos position embeddings need a dimension divisible by 4, got {}", dim);
  const auto omega = 1.0 / torch::pow(10000.0, torch::arange(dim / 4, torch::kDouble) / (dim / 4.0));
  const auto coords = torch::arange(grid, torch::kDouble);
  const auto w = coords.repeat({grid}), h = coords.repeat_interleave(grid);  // patch i = (row i / grid, col i % grid)
  auto half = [&](const torch::Tensor& pos) {
    const auto out = pos.unsqueeze(1) * omega.unsqueeze(0);
    return torch::cat({out.sin(), out.cos()}, 1);
  };
  const auto table = torch::cat({half(w), half(h)}, 1);
  return torch::cat({torch::zeros({1, dim}, torch::kDouble), table}, 0).to(torch::kFloat);
}

ViTImpl::ViTImpl(ViTOptions options) : options_(options) {
  const auto& o = options_;
  patch_proj = nn::Conv2d(nn::Conv2dOptions(o.in_channels, o.embed_dim, o.patch_size).stride(o.patch_size));
  nn::init::xavier_uniform_(patch_proj->weight.view({o.embed_dim, -1}));
  register_module("patch_embed", PatchEmbed(patch_proj));
  cls_token = register_parameter("cls_token", torch::randn({1, 1, o.embed_dim}) * 0.02);
  const int64_t grid = o.image_size / o.patch_size;
  if (o.sincos_pos_embed) {
    pos_embed = register_parameter("pos_embed", sincos_position_table(o.embed_dim, grid).unsqueeze(0), /*requires_grad=*/false);
  } else {
    pos_embed = register_parameter("pos_embed", torch::randn({1, 1 + grid * grid, o.embed_dim}) * 0.02);
  }
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < o.depth; ++i)
    blocks->push_back(ViTBlock(o, o.depth > 1 ? o.drop_path * static_cast<double>(i) / static_cast<double>(o.depth - 1) : o.drop_path));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({o.embed_dim}).eps(o.norm_eps)));
}

ViTTokens ViTImpl::forward_tokens(const torch::Tensor& x, double mask_ratio, torch::Tensor noise,
                                  const std::vector<int64_t>& return_blocks) {
  const auto& o = options_;
  if (x.dim() != 4 || x.size(1) != o.in_channels || x.size(2) != o.image_size || x.size(3) != o.image_size)
    fail("ViT: expected input [B, {}, {}, {}], got {}", o.in_channels, o.image_size, o.image_size, x.sizes());
  ViTTokens out;
  auto tokens = patch_proj(x).flatten(2).transpose(1, 2) + pos_embed.slice(1, 1);  // [B, N, D]
  const int64_t b = tokens.size(0), n = tokens.size(1), d = tokens.size(2);
  if (mask_ratio > 0) {
    // MAE's random masking: keep the tokens with the smallest noise, in ascending-noise order.
    const auto keep = static_cast<int64_t>(static_cast<double>(n) * (1 - mask_ratio));
    if (!(mask_ratio < 1) || keep < 1) fail("ViT: mask_ratio {} keeps none of the {} patch tokens", mask_ratio, n);
    if (!noise.defined()) noise = torch::rand({b, n}, tokens.options());
    if (noise.sizes() != torch::IntArrayRef{b, n}) fail("ViT: masking noise must be [{}, {}], got {}", b, n, noise.sizes());
    const auto shuffle = torch::argsort(noise.to(tokens.device()), int64_t{1});
    out.ids_restore = torch::argsort(shuffle, int64_t{1});
    const auto kept = shuffle.slice(1, 0, keep);
    tokens = torch::gather(tokens, 1, kept.unsqueeze(-1).expand({b, keep, d}));
    out.mask = torch::ones({b, n}, tokens.options());
    out.mask.slice(1, 0, keep).zero_();
    out.mask = torch::gather(out.mask, 1, out.ids_restore);
  }
  const auto cls = (cls_token + pos_embed.slice(1, 0, 1)).expand({b, 1, d});
  tokens = torch::cat({cls, tokens}, 1);
  for (size_t i = 0; i < blocks->size(); ++i) {
    tokens = blocks[i]->as<ViTBlock>()->forward(tokens);
    if (std::find(return_blocks.begin(), return_blocks.end(), static_cast<int64_t>(i) + 1) != return_blocks.end())
      out.hidden.push_back(tokens);
  }
  if (out.hidden.size() != return_blocks.size()) fail("ViT: return_blocks must be distinct numbers in 1..{}", o.depth);
  out.tokens = norm(tokens);
  return out;
}

torch::Tensor ViTImpl::forward(const torch::Tensor& x) { return forward_tokens(x).tokens.select(1, 0); }

int64_t ViTImpl::layer_id(const std::string& name) const {
  if (name == "cls_token" || name == "pos_embed" || name.rfind("patch_embed.", 0) == 0) return 0;
  if (name.rfind("blocks.", 0) == 0) return std::stoll(name.substr(7, name.find('.', 7) - 7)) + 1;
  if (name.rfind("norm.", 0) == 0) return options_.depth + 1;
  return -1;
}

safetensors::TensorMap convert_hf_vit(const safetensors::TensorMap& hf) {
  static const std::regex block(R"(^(?:layers|encoder\.layer)\.(\d+)\.(.+)$)");
  static const std::map<std::string, std::string> block_names = {
      {"layernorm_before", "norm1"},          {"layernorm_after", "norm2"},
      {"attention.o_proj", "attn.proj"},      {"attention.output.dense", "attn.proj"},
      {"mlp.fc1", "mlp.fc1"},                 {"intermediate.dense", "mlp.fc1"},
      {"mlp.fc2", "mlp.fc2"},                 {"output.dense", "mlp.fc2"}};
  static const std::map<std::string, int> qkv_names = {
      {"attention.q_proj", 0}, {"attention.attention.query", 0}, {"attention.k_proj", 1},
      {"attention.attention.key", 1}, {"attention.v_proj", 2}, {"attention.attention.value", 2}};
  safetensors::TensorMap out;
  std::map<std::string, std::array<torch::Tensor, 3>> qkv;  // "blocks.N.attn.qkv.weight" -> q, k, v
  for (const auto& [full, tensor] : hf) {
    std::string name = full.rfind("vit.", 0) == 0 ? full.substr(4) : full;
    if (name.rfind("decoder.", 0) == 0 || name.rfind("pooler.", 0) == 0 || name.rfind("classifier.", 0) == 0 ||
        name == "embeddings.mask_token")
      continue;
    std::smatch m;
    if (name == "embeddings.cls_token") out["cls_token"] = tensor;
    else if (name == "embeddings.position_embeddings") out["pos_embed"] = tensor;
    else if (name.rfind("embeddings.patch_embeddings.projection.", 0) == 0) out["patch_embed.proj." + name.substr(39)] = tensor;
    else if (name.rfind("layernorm.", 0) == 0) out["norm." + name.substr(10)] = tensor;
    else if (std::regex_match(name, m, block)) {
      const std::string rest = m[2], module = rest.substr(0, rest.rfind('.')), leaf = rest.substr(rest.rfind('.') + 1);
      const std::string prefix = "blocks." + m[1].str() + ".";
      if (auto it = block_names.find(module); it != block_names.end()) out[prefix + it->second + "." + leaf] = tensor;
      else if (auto q = qkv_names.find(module); q != qkv_names.end()) qkv[prefix + "attn.qkv." + leaf][static_cast<size_t>(q->second)] = tensor;
      else out[full] = tensor;  // unknown: load_into reports it as unexpected
    } else {
      out[full] = tensor;
    }
  }
  for (const auto& [name, parts] : qkv) {
    for (const auto& p : parts)
      if (!p.defined()) fail("convert_hf_vit: {} lacks one of its query, key and value tensors", name);
    out[name] = torch::cat({parts[0], parts[1], parts[2]}, 0);
  }
  return out;
}

namespace {

// The registered classifier: a ViT's final-norm CLS token through a linear head (MAE fine-tuning).
class ViTClassifier : public Model, public LayerDepths {
 public:
  explicit ViTClassifier(const Config& c)
      : input_(c.get<std::string>("input", "image")), mask_ratio_(c.get<double>("mask_ratio", 0.0)) {
    if (!(mask_ratio_ >= 0 && mask_ratio_ < 1))
      fail("{}: {}: expected a share in [0, 1), got {}", c.where("mask_ratio"), c.full_key("mask_ratio"), mask_ratio_);
    vit_ = register_module("vit", ViT(ViTOptions::from(c)));
    head_ = register_module("head", torch::nn::Linear(vit_->options().embed_dim, c.get<int64_t>("num_classes")));
  }
  Outputs forward(const data::Batch& batch) override {
    const auto tokens = vit_->forward_tokens(batch.fields.at(input_), is_training() ? mask_ratio_ : 0.0).tokens;
    return {{"logits", head_->forward(tokens.select(1, 0))}};
  }
  int64_t num_layer_ids() const override { return vit_->num_layer_ids(); }
  int64_t layer_id(const std::string& name) const override {
    return name.rfind("vit.", 0) == 0 ? vit_->layer_id(name.substr(4)) : num_layer_ids() - 1;
  }

 private:
  std::string input_;
  double mask_ratio_;
  ViT vit_{nullptr};
  torch::nn::Linear head_{nullptr};
};

FACET_REGISTER(model_registry(), "vit",
               "ViT classifier, MAE/timm layout (embed_dim, depth, num_heads, patch_size, num_classes, mask_ratio)",
               [](const Config& c) { return std::make_shared<ViTClassifier>(c); });

}  // namespace
}  // namespace facet::models
