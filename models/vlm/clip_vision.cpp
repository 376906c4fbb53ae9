#include "models/vlm/clip_vision.h"

#include "core/error.h"
#include "models/weights/converter.h"

#include <fmt/format.h>

namespace facet::models::vlm {
namespace nn = torch::nn;

ClipVisionOptions ClipVisionOptions::vit_l14_336() {
  ClipVisionOptions o;
  o.image_size = 336;
  o.patch_size = 14;
  o.hidden_size = 1024;
  o.intermediate_size = 4096;
  o.num_hidden_layers = 24;
  o.num_attention_heads = 16;
  o.feature_layer = -2;
  return o;
}

ClipVisionOptions ClipVisionOptions::vit_b32() { return ClipVisionOptions{}; }

ClipVisionOptions ClipVisionOptions::vit_b16() {
  ClipVisionOptions o;
  o.patch_size = 16;
  return o;
}

ClipVisionOptions ClipVisionOptions::from(const Config& c, const ClipVisionOptions& base) {
  ClipVisionOptions o = base;
  const auto preset = c.get<std::string>("preset", "");
  if (preset.empty()) o = base;
  else if (preset == "vit_l14_336") o = vit_l14_336();
  else if (preset == "vit_b32") o = vit_b32();
  else if (preset == "vit_b16") o = vit_b16();
  else fail("{}: {}: unknown CLIP preset '{}' (vit_l14_336, vit_b32, vit_b16)", c.where("preset"), c.full_key("preset"), preset);
  o.image_size = c.get<int64_t>("image_size", o.image_size);
  o.patch_size = c.get<int64_t>("patch_size", o.patch_size);
  o.num_channels = c.get<int64_t>("num_channels", o.num_channels);
  o.hidden_size = c.get<int64_t>("hidden_size", o.hidden_size);
  o.intermediate_size = c.get<int64_t>("intermediate_size", o.intermediate_size);
  o.num_hidden_layers = c.get<int64_t>("num_hidden_layers", o.num_hidden_layers);
  o.num_attention_heads = c.get<int64_t>("num_attention_heads", o.num_attention_heads);
  o.layer_norm_eps = c.get<double>("layer_norm_eps", o.layer_norm_eps);
  o.hidden_act = c.get<std::string>("hidden_act", o.hidden_act);
  o.feature_layer = c.get<int64_t>("feature_layer", o.feature_layer);
  o.keep_cls = c.get<bool>("keep_cls", o.keep_cls);
  o.validate(c.where() + ": " + (c.prefix().empty() ? std::string("clip_vit") : c.prefix()));
  return o;
}

int64_t ClipVisionOptions::feature_index() const {
  return feature_layer < 0 ? num_hidden_layers + 1 + feature_layer : feature_layer;
}

void ClipVisionOptions::validate(const std::string& where) const {
  if (patch_size <= 0 || image_size % patch_size != 0)
    fail("{}: image_size {} is not a multiple of patch_size {}", where, image_size, patch_size);
  if (num_attention_heads <= 0 || hidden_size % num_attention_heads != 0)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", where, hidden_size, num_attention_heads);
  if (num_hidden_layers < 1) fail("{}: num_hidden_layers must be >= 1, got {}", where, num_hidden_layers);
  if (hidden_act != "quick_gelu" && hidden_act != "gelu") fail("{}: hidden_act must be quick_gelu or gelu, got '{}'", where, hidden_act);
  if (feature_index() < 0 || feature_index() > num_hidden_layers)
    fail("{}: feature_layer {} is outside the {} hidden states (-{}..{})", where, feature_layer, num_hidden_layers + 1,
         num_hidden_layers + 1, num_hidden_layers);
}

namespace {

ClipLayerNorm layer_norm(const ClipVisionOptions& o) { return ClipLayerNorm(o.hidden_size, o.layer_norm_eps); }

}  // namespace

ClipLayerNormImpl::ClipLayerNormImpl(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", empty_parameter({dim}));
  bias = register_parameter("bias", empty_parameter({dim}));
  if (!deferring_init()) {
    torch::NoGradGuard no_grad;
    weight.fill_(1);
    bias.zero_();
  }
}

torch::Tensor ClipLayerNormImpl::forward(const torch::Tensor& x) { return torch::layer_norm(x, {dim_}, weight, bias, eps_); }

ClipWeightImpl::ClipWeightImpl(std::vector<int64_t> shape, double std) {
  weight = register_parameter("weight", empty_parameter(shape));
  if (!deferring_init()) {
    torch::NoGradGuard no_grad;
    weight.normal_(0, std);
  }
}

ClipAttentionImpl::ClipAttentionImpl(int64_t dim, int64_t heads, bool causal) : heads_(heads), causal_(causal) {
  q_proj = register_module("q_proj", Linear(dim, dim));
  k_proj = register_module("k_proj", Linear(dim, dim));
  v_proj = register_module("v_proj", Linear(dim, dim));
  out_proj = register_module("out_proj", Linear(dim, dim));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2);
  auto split = [&](const torch::Tensor& t) { return t.view({b, l, heads_, d / heads_}).transpose(1, 2); };
  const auto out = at::scaled_dot_product_attention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)), {}, 0.0, causal_);  // scale head_dim^-0.5
  return out_proj(out.transpose(1, 2).reshape({b, l, d}));
}

ClipMlpImpl::ClipMlpImpl(int64_t dim, int64_t hidden, std::string act) : act_(std::move(act)) {
  fc1 = register_module("fc1", Linear(dim, hidden));
  fc2 = register_module("fc2", Linear(hidden, dim));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  auto h = fc1(x);
  h = act_ == "quick_gelu" ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipVisionOptions& o)
    : ClipEncoderLayerImpl(o.hidden_size, o.num_attention_heads, o.intermediate_size, o.layer_norm_eps, o.hidden_act, false) {}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(int64_t dim, int64_t heads, int64_t intermediate, double eps, const std::string& act,
                                           bool causal) {
  self_attn = register_module("self_attn", ClipAttention(dim, heads, causal));
  layer_norm1 = register_module("layer_norm1", ClipLayerNorm(dim, eps));
  mlp = register_module("mlp", ClipMlp(dim, intermediate, act));
  layer_norm2 = register_module("layer_norm2", ClipLayerNorm(dim, eps));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn(layer_norm1(x));
  return h + mlp(layer_norm2(h));
}

ClipVisionEmbeddingsImpl::ClipVisionEmbeddingsImpl(const ClipVisionOptions& o) {
  if (deferring_init()) {
    class_embedding = register_parameter("class_embedding", empty_parameter({o.hidden_size}));
  } else {
    class_embedding = register_parameter("class_embedding", torch::randn({o.hidden_size}).to(construction_tensor_options()));
  }
  patch_size_ = o.patch_size;
  // transformers' CLIP init: N(0, initializer_range 0.02) for both tables.
  patch_embedding = register_module("patch_embedding", ClipWeight(std::vector<int64_t>{o.hidden_size, o.num_channels, o.patch_size, o.patch_size}, 0.02));
  position_embedding = register_module("position_embedding", ClipWeight(std::vector<int64_t>{o.num_positions(), o.hidden_size}, 0.02));
}

torch::Tensor ClipVisionEmbeddingsImpl::forward(const torch::Tensor& pixels) {
  const auto& w = patch_embedding->weight;
  const auto patches = torch::conv2d(pixels.to(w.dtype()), w, {}, patch_size_).flatten(2).transpose(1, 2);  // [B, N, D]
  const int64_t b = patches.size(0);
  const auto cls = class_embedding.view({1, 1, -1}).expand({b, 1, patches.size(2)});
  return torch::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionOptions& o) {
  embeddings = register_module("embeddings", ClipVisionEmbeddings(o));
  pre_layrnorm = register_module("pre_layrnorm", layer_norm(o));
  auto encoder = register_module("encoder", std::make_shared<nn::Module>());
  layers = encoder->register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < o.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(o));
  post_layernorm = register_module("post_layernorm", layer_norm(o));
}

ClipVisionImpl::ClipVisionImpl(ClipVisionOptions options) : options_(std::move(options)) {
  options_.validate();
  vision_model = register_module("vision_model", ClipVisionTransformer(options_));
}

torch::Tensor ClipVisionImpl::hidden_state(const torch::Tensor& pixels, int64_t index) {
  const auto& o = options_;
  if (pixels.dim() != 4 || pixels.size(1) != o.num_channels || pixels.size(2) != o.image_size || pixels.size(3) != o.image_size)
    fail("CLIP vision: expected pixels [B, {}, {}, {}], got {}", o.num_channels, o.image_size, o.image_size, pixels.sizes());
  const int64_t last = o.num_hidden_layers;
  if (index < 0) index += last + 1;
  if (index < 0 || index > last) fail("CLIP vision: hidden state {} does not exist (0..{})", index, last);
  auto h = vision_model->pre_layrnorm(vision_model->embeddings(pixels));
  for (int64_t i = 0; i < index; ++i) h = vision_model->layers[static_cast<size_t>(i)]->as<ClipEncoderLayer>()->forward(h);
  return h;
}

ClipVisionOutput ClipVisionImpl::forward(const torch::Tensor& pixels) {
  ClipVisionOutput out;
  out.last_hidden_state = hidden_state(pixels, options_.num_hidden_layers);
  out.pooler_output = vision_model->post_layernorm(out.last_hidden_state.select(1, 0));
  return out;
}

torch::Tensor ClipVisionImpl::features(const torch::Tensor& pixels) {
  const auto h = hidden_state(pixels, options_.feature_index());
  return options_.keep_cls ? h : h.slice(1, 1);
}

std::vector<FeatureInfo> ClipVisionImpl::feature_info() const {
  return {{fmt::format("layer{}", options_.feature_index()), options_.patch_size, options_.hidden_size}};
}

TensorDict ClipVisionImpl::forward_features(const torch::Tensor& images) {
  const auto h = hidden_state(images, options_.feature_index()).slice(1, 1);
  const int64_t g = options_.grid();
  return TensorDict{{fmt::format("layer{}", options_.feature_index()),
                     h.transpose(1, 2).reshape({images.size(0), options_.hidden_size, g, g})}};
}

ViTOptions biomedclip_vit_options() {
  ViTOptions o;  // ViT-B/16 at 224 with timm's defaults
  o.image_size = 224;
  o.patch_size = 16;
  o.embed_dim = 768;
  o.depth = 12;
  o.num_heads = 12;
  o.norm_eps = 1e-6;
  return o;
}

namespace {

// Hub CLIP files -> this layout. Names are taken relative to `vision_model.` when present (CLIPModel,
// and llava-hf's vision_tower.vision_model.* after strip_prefix) or as they are (transformers 5's
// CLIPVisionModel.save_pretrained writes them without it).
ConversionPlan hf_clip_vision_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "vision_model.embeddings.class_embedding", "CLIP vision tower");
  ConversionPlan plan;
  for (const auto& t : file) {
    const std::string& n = t.name;
    if (n.starts_with("text_model.") || n == "text_projection.weight") plan.drop(n, "CLIP text tower");
    else if (n == "visual_projection.weight") plan.drop(n, "CLIP image projection (the towers' features are taken before it)");
    else if (n == "logit_scale") plan.drop(n, "CLIP logit scale");
    else if (n.ends_with("position_ids")) plan.drop(n, "position ids (a buffer transformers rebuilds)");
    else if (n.starts_with("vision_model.")) plan.copy(n, at + n);
    else plan.copy(n, at + "vision_model." + n);
  }
  std::vector<std::string> covers;
  for (const auto& [name, shape] : model)
    if (name.starts_with(at + "vision_model.")) covers.push_back(name);
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "hf_clip_vision",
               "Hugging Face CLIP (CLIPModel / CLIPVisionModel files, with or without vision_model.) -> Facet's CLIP vision "
               "tower (clip_vit); text tower, projections and logit scale left out; finds the tower in the model",
               make_converter(hf_clip_vision_plan));

FACET_REGISTER(backbone_registry(), "clip_vit",
               "CLIP ViT image tower in transformers' CLIPVisionModel names (preset vit_l14_336 | vit_b32 | vit_b16, "
               "feature_layer, keep_cls): the selected layer's patch tokens as a map at stride patch_size",
               [](const Config& c) -> std::shared_ptr<Backbone> { return ClipVision(ClipVisionOptions::from(c)).ptr(); });

FACET_REGISTER(backbone_registry(), "biomedclip_vit",
               "BiomedCLIP's image trunk (open_clip, timm vit_base_patch16_224 names): patch tokens after the final norm as "
               "a stride-16 map; load with convert: timm_vit, strip_prefix: visual.trunk.",
               [](const Config& c) -> std::shared_ptr<Backbone> {
                 auto o = biomedclip_vit_options();
                 o.image_size = c.get<int64_t>("image_size", o.image_size);
                 o.patch_size = c.get<int64_t>("patch_size", o.patch_size);
                 o.embed_dim = c.get<int64_t>("embed_dim", o.embed_dim);
                 o.depth = c.get<int64_t>("depth", o.depth);
                 o.num_heads = c.get<int64_t>("num_heads", o.num_heads);
                 return ViT(o).ptr();
               });

}  // namespace
}  // namespace facet::models::vlm
