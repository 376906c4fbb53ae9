#include "models/backbones/vit.h"

#include "models/layers/drop_path.h"
#include "models/weights/converter.h"

#include <array>
#include <cmath>
#include <cstring>
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
  o.feature_blocks = c.get<std::vector<int64_t>>("feature_blocks", o.feature_blocks);
  for (size_t i = 0; i < o.feature_blocks.size(); ++i)
    if (o.feature_blocks[i] < 1 || o.feature_blocks[i] > o.depth || (i > 0 && o.feature_blocks[i] <= o.feature_blocks[i - 1]))
      fail("{}: {}: expected increasing block numbers in 1..{}", c.where("feature_blocks"), c.full_key("feature_blocks"), o.depth);
  if (o.patch_size <= 0 || o.image_size % o.patch_size != 0)
    fail("{}: {} {} is not a multiple of patch_size {}", c.where("image_size"), c.full_key("image_size"), o.image_size, o.patch_size);
  if (o.num_heads <= 0 || o.embed_dim % o.num_heads != 0)
    fail("{}: {} {} is not a multiple of num_heads {}", c.where("embed_dim"), c.full_key("embed_dim"), o.embed_dim, o.num_heads);
  if (o.depth < 1) fail("{}: {}: expected >= 1, got {}", c.where("depth"), c.full_key("depth"), o.depth);
  if (o.drop_path < 0 || o.drop_path >= 1) fail("{}: {}: expected [0, 1)", c.where("drop_path"), c.full_key("drop_path"));
  return o;
}

namespace {

Linear linear(int64_t in, int64_t out, bool bias = true) {
  Linear l(LinearOptions(in, out).bias(bias));
  if (!deferring_init()) {
    nn::init::xavier_uniform_(l->weight);  // MAE / timm initialisation
    if (bias) nn::init::zeros_(l->bias);
  }
  return l;
}

nn::LayerNorm layer_norm(const ViTOptions& o) {
  nn::LayerNorm norm(nn::LayerNormOptions({o.embed_dim}).eps(o.norm_eps));
  to_scope(*norm);
  return norm;
}

// A table drawn N(0, 0.02) (cls_token, a learned pos_embed), or left empty when deferring.
torch::Tensor small_normal(c10::IntArrayRef shape) {
  if (deferring_init()) return empty_parameter(shape);
  return (torch::randn(shape) * 0.02).to(construction_tensor_options());
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
  // unbind, not three selects: its backward stacks the three gradients once, where each select's
  // backward would zero-fill a tensor of the whole qkv size and the three would be summed.
  const auto qkv_heads = qkv(x).view({b, l, 3, heads_, d / heads_}).permute({2, 0, 3, 1, 4}).unbind(0);  // 3 x [B, H, L, Dh]
  const auto out = at::scaled_dot_product_attention(qkv_heads[0], qkv_heads[1], qkv_heads[2]);
  return proj(out.transpose(1, 2).reshape({b, l, d}));
}

ViTMlpImpl::ViTMlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", linear(dim, hidden));
  fc2 = register_module("fc2", linear(hidden, dim));
}

ViTBlockImpl::ViTBlockImpl(const ViTOptions& o, double drop_path) : drop_path_(drop_path) {
  norm1 = register_module("norm1", layer_norm(o));
  attn = register_module("attn", ViTAttention(o.embed_dim, o.num_heads, o.qkv_bias));
  norm2 = register_module("norm2", layer_norm(o));
  mlp = register_module("mlp", ViTMlp(o.embed_dim, static_cast<int64_t>(std::lround(o.embed_dim * o.mlp_ratio))));
}

torch::Tensor ViTBlockImpl::forward(const torch::Tensor& x) {
  auto h = x + drop_path(attn(norm1(x)), drop_path_, is_training());
  return h + drop_path(mlp(norm2(h)), drop_path_, is_training());
}

torch::Tensor resize_position_embedding(const torch::Tensor& pos_embed, int64_t grid, int64_t extra) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || pos_embed.size(1) <= extra)
    fail("pos_embed: expected [1, {} + patches, dim], got {}", extra, pos_embed.sizes());
  const int64_t patches = pos_embed.size(1) - extra, dim = pos_embed.size(2);
  const auto old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  if (old_grid * old_grid != patches) fail("pos_embed: {} patch positions do not form a square grid", patches);
  if (old_grid == grid) return pos_embed;
  const torch::Tensor cls = pos_embed.slice(1, 0, extra);
  const torch::Tensor image = pos_embed.slice(1, extra).reshape({1, old_grid, old_grid, dim}).permute({0, 3, 1, 2}).to(torch::kFloat);
  const torch::Tensor resized = torch::nn::functional::interpolate(
      image, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{grid, grid})
                 .mode(torch::kBicubic)
                 .align_corners(false));
  return torch::cat({cls, resized.permute({0, 2, 3, 1}).reshape({1, grid * grid, dim}).to(pos_embed.dtype())}, 1);
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
  if (deferring_init()) {
    mark_uninitialized(patch_proj->weight);
    mark_uninitialized(patch_proj->bias);
  } else {
    nn::init::xavier_uniform_(patch_proj->weight.view({o.embed_dim, -1}));
  }
  to_scope(*patch_proj);
  register_module("patch_embed", PatchEmbed(patch_proj));
  cls_token = register_parameter("cls_token", small_normal({1, 1, o.embed_dim}));
  const int64_t grid = o.image_size / o.patch_size;
  if (o.sincos_pos_embed) {
    pos_embed = register_parameter("pos_embed", sincos_position_table(o.embed_dim, grid).unsqueeze(0).to(construction_tensor_options()),
                                   /*requires_grad=*/false);
  } else {
    pos_embed = register_parameter("pos_embed", small_normal({1, 1 + grid * grid, o.embed_dim}));
  }
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < o.depth; ++i)
    blocks->push_back(ViTBlock(o, o.depth > 1 ? o.drop_path * static_cast<double>(i) / static_cast<double>(o.depth - 1) : o.drop_path));
  norm = register_module("norm", layer_norm(o));
}

std::vector<FeatureInfo> ViTImpl::feature_info() const {
  const auto& o = options_;
  const std::vector<int64_t> chosen = o.feature_blocks.empty() ? std::vector<int64_t>{o.depth} : o.feature_blocks;
  std::vector<FeatureInfo> out;
  for (int64_t k : chosen) out.push_back({fmt::format("block{}", k), o.patch_size, o.embed_dim});
  return out;
}

TensorDict ViTImpl::forward_features(const torch::Tensor& images) {
  const auto& o = options_;
  const std::vector<int64_t> chosen = o.feature_blocks.empty() ? std::vector<int64_t>{o.depth} : o.feature_blocks;
  std::vector<int64_t> intermediate;
  for (int64_t k : chosen)
    if (k != o.depth) intermediate.push_back(k);
  const ViTTokens t = forward_tokens(images, 0.0, {}, intermediate);
  const int64_t b = images.size(0), g = o.image_size / o.patch_size;
  auto as_map = [&](const torch::Tensor& tokens) { return tokens.slice(1, 1).transpose(1, 2).reshape({b, o.embed_dim, g, g}); };
  TensorDict out;
  for (size_t i = 0; i < intermediate.size(); ++i) out[fmt::format("block{}", intermediate[i])] = as_map(t.hidden[i]);
  if (chosen.back() == o.depth) out[fmt::format("block{}", o.depth)] = as_map(t.tokens);
  return out;
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

// --- weight converters --------------------------------------------------------------------------
namespace {

// [q; k; v] stacked along the output dimension.
std::vector<int64_t> concatenated_shape(const std::vector<const SourceTensor*>& parts) {
  std::vector<int64_t> shape = parts[0]->shape;
  for (size_t i = 1; i < parts.size(); ++i) shape[0] += parts[i]->shape[0];
  return shape;
}

torch::Tensor concatenate(const std::vector<torch::Tensor>& parts) { return torch::cat(parts, 0); }

// Hugging Face ViT / ViT-MAE names -> this layout (relative to the ViT): the name table of hf_vit.
ConversionPlan hf_vit_names(const SourceTensors& file) {
  static const std::regex block(R"(^(?:layers|encoder\.layer)\.(\d+)\.(.+)$)");
  static const std::map<std::string, std::string> block_names = {
      {"layernorm_before", "norm1"},          {"layernorm_after", "norm2"},
      {"attention.o_proj", "attn.proj"},      {"attention.output.dense", "attn.proj"},
      {"mlp.fc1", "mlp.fc1"},                 {"intermediate.dense", "mlp.fc1"},
      {"mlp.fc2", "mlp.fc2"},                 {"output.dense", "mlp.fc2"}};
  static const std::map<std::string, int> qkv_names = {
      {"attention.q_proj", 0}, {"attention.attention.query", 0}, {"attention.k_proj", 1},
      {"attention.attention.key", 1}, {"attention.v_proj", 2}, {"attention.attention.value", 2}};
  ConversionPlan plan;
  std::map<std::string, std::array<const SourceTensor*, 3>> qkv;  // "blocks.N.attn.qkv.weight" -> q, k, v
  for (const auto& t : file) {
    const std::string name = t.name.starts_with("vit.") ? t.name.substr(4) : t.name;
    if (name.starts_with("decoder.")) plan.drop(t.name, "MAE decoder");
    else if (name == "embeddings.mask_token") plan.drop(t.name, "MAE mask token");
    else if (name.starts_with("pooler.")) plan.drop(t.name, "pooler");
    else if (name.starts_with("classifier.")) plan.drop(t.name, "classifier of the source task");
    else if (name == "embeddings.cls_token") plan.copy(t.name, "cls_token");
    else if (name == "embeddings.position_embeddings") plan.copy(t.name, "pos_embed");
    else if (name.starts_with("embeddings.patch_embeddings.projection.")) plan.copy(t.name, "patch_embed.proj." + name.substr(39));
    else if (name.starts_with("layernorm.")) plan.copy(t.name, "norm." + name.substr(10));
    else if (std::smatch m; std::regex_match(name, m, block)) {
      const std::string rest = m[2], module = rest.substr(0, rest.rfind('.')), leaf = rest.substr(rest.rfind('.') + 1);
      const std::string prefix = "blocks." + m[1].str() + ".";
      if (auto it = block_names.find(module); it != block_names.end()) plan.copy(t.name, prefix + it->second + "." + leaf);
      else if (auto q = qkv_names.find(module); q != qkv_names.end()) qkv[prefix + "attn.qkv." + leaf][static_cast<size_t>(q->second)] = &t;
      else plan.copy(t.name, t.name);  // unknown: reported as a file tensor the model lacks
    } else {
      plan.copy(t.name, t.name);
    }
  }
  for (const auto& [name, parts] : qkv) {
    for (size_t i = 0; i < 3; ++i)
      if (!parts[i]) fail("{} lacks its {} tensor", name, std::array{"query", "key", "value"}[i]);
    plan.tensors.push_back({name, {parts[0]->name, parts[1]->name, parts[2]->name}, concatenated_shape({parts[0], parts[1], parts[2]}),
                            concatenate, {}});
  }
  return plan;
}

// MAE / timm checkpoints -> this layout (relative to the ViT): the name table of timm_vit.
ConversionPlan timm_vit_names(const SourceTensors& file) {
  ConversionPlan plan;
  auto strip = [](const std::string& name) {
    for (const char* prefix : {"module.vit.", "module.", "vit."})  // DDP and wrapper prefixes; the first that fits
      if (name.starts_with(prefix)) return name.substr(std::strlen(prefix));
    return name;
  };
  bool has_norm = false;
  for (const auto& t : file) has_norm = has_norm || strip(t.name).starts_with("norm.");
  for (const auto& t : file) {
    const std::string name = strip(t.name);
    if (name.starts_with("decoder")) plan.drop(t.name, "MAE decoder");
    else if (name == "mask_token") plan.drop(t.name, "MAE mask token");
    // MAE fine-tuning with global pooling replaces the final norm by fc_norm (same shape, applied to
    // the pooled tokens); it stands in for the norm when the file has no other.
    else if (name.starts_with("fc_norm.") && has_norm) plan.drop(t.name, "global-pool norm");
    else if (name.starts_with("fc_norm.")) plan.copy(t.name, "norm." + name.substr(8));
    else plan.copy(t.name, name);
  }
  return plan;
}

// The steps every ViT source shares, once its names are this layout's: find the ViT in the model,
// leave the source's classifier out (the model keeps its own head, as MAE fine-tuning does), resize
// the position table to the model's patch grid.
ConversionPlan place_vit(ConversionPlan named, const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "patch_embed.proj.weight", "ViT");
  ConversionPlan plan;
  plan.dropped = std::move(named.dropped);
  std::map<std::string, const SourceTensor*> by_name;
  for (const auto& t : file) by_name[t.name] = &t;
  for (auto& recipe : named.tensors) {
    if (recipe.target.starts_with("head.")) {
      for (const auto& s : recipe.sources) plan.drop(s, "classifier of the source task");
      continue;
    }
    if (recipe.target == "pos_embed" && !recipe.make) {
      const auto target = model.find(at + "pos_embed");
      const auto& shape = by_name.at(recipe.sources[0])->shape;
      if (target != model.end() && shape.size() == 3 && target->second.size() == 3 && shape[1] != target->second[1] &&
          shape[2] == target->second[2]) {
        const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(target->second[1] - 1))));
        const int64_t old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(shape[1] - 1))));
        if (grid * grid == target->second[1] - 1 && old_grid * old_grid == shape[1] - 1) {
          recipe.shape = target->second;
          recipe.make = [grid](const std::vector<torch::Tensor>& s) { return resize_position_embedding(s[0], grid); };
          recipe.note = fmt::format("resized from a {}x{} patch grid to {}x{}", old_grid, old_grid, grid, grid);
        }
      }
    }
    recipe.target = at + recipe.target;
    plan.tensors.push_back(std::move(recipe));
  }
  std::vector<std::string> covers;
  for (const auto& [name, shape] : model)
    if (name.starts_with(at) && !name.substr(at.size()).starts_with("head.")) covers.push_back(name);
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "timm_vit",
               "MAE / timm ViT -> Facet ViT: module./vit. prefixes stripped, MAE decoder, mask token and classifier left out, "
               "fc_norm as the final norm, pos_embed resized to the model's grid; finds the ViT in the model",
               make_converter([](const SourceTensors& file, const TargetShapes& model) {
                 return place_vit(timm_vit_names(file), file, model);
               }));

FACET_REGISTER(converter_registry(), "hf_vit",
               "Hugging Face ViT / ViT-MAE (hub names encoder.layer.N.attention.attention.query... or transformers 5 "
               "layers.N.attention.q_proj...) -> Facet ViT: q, k, v into qkv, then as timm_vit",
               make_converter([](const SourceTensors& file, const TargetShapes& model) {
                 return place_vit(hf_vit_names(file), file, model);
               }));

}  // namespace

safetensors::TensorMap convert_hf_vit(const safetensors::TensorMap& hf) {
  SourceTensors file;
  for (const auto& [name, t] : hf) file.push_back({name, safetensors::from_torch(t.scalar_type()), t.sizes().vec()});
  const ConversionPlan plan = hf_vit_names(file);
  safetensors::TensorMap out;
  for (const auto& recipe : plan.tensors) {
    std::vector<torch::Tensor> inputs;
    for (const auto& s : recipe.sources) inputs.push_back(hf.at(s));
    out[recipe.target] = recipe.make ? recipe.make(inputs) : inputs[0];
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
    head_ = register_module("head", Linear(vit_->options().embed_dim, c.get<int64_t>("num_classes")));
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
  Linear head_{nullptr};
};

FACET_REGISTER(model_registry(), "vit",
               "ViT classifier, MAE/timm layout (embed_dim, depth, num_heads, patch_size, num_classes, mask_ratio)",
               [](const Config& c) { return std::make_shared<ViTClassifier>(c); });

FACET_REGISTER(backbone_registry(), "vit",
               "ViT, MAE/timm layout: patch tokens of feature_blocks (default the last) as maps at stride patch_size",
               [](const Config& c) -> std::shared_ptr<Backbone> { return ViT(ViTOptions::from(c)).ptr(); });

}  // namespace
}  // namespace facet::models
