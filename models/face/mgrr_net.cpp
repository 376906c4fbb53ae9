#include "models/face/mgrr_net.h"

#include "core/safetensors.h"
#include "models/face/au_regions.h"

#include <cmath>

namespace facet::models::face {
namespace nn = torch::nn;

MGRRNetOptions MGRRNetOptions::from(const Config& c) {
  MGRRNetOptions o;
  o.aus = c.get<std::vector<int>>("aus", o.aus);
  o.backbone_depth = c.get<int>("backbone_depth", o.backbone_depth);
  if (c.has("backbone")) {
    if (c.has("backbone_depth"))
      fail("{}: {}: give either backbone or backbone_depth", c.where("backbone_depth"), c.full_key("backbone_depth"));
    o.backbone = c.at("backbone");
  }
  o.dim = c.get<int64_t>("dim", o.dim);
  o.num_layers = c.get<int64_t>("num_layers", o.num_layers);
  o.region_size = c.get<double>("region_size", o.region_size);
  o.region_level = c.get<bool>("region_level", o.region_level);
  o.pixel_level = c.get<bool>("pixel_level", o.pixel_level);
  o.channel_level = c.get<bool>("channel_level", o.channel_level);
  o.dropout = c.get<double>("dropout", o.dropout);
  if (o.aus.empty()) fail("{}: {}: expected at least one AU", c.where("aus"), c.full_key("aus"));
  if (o.dim < 8 || o.dim % 8 != 0) fail("{}: {}: expected a positive multiple of 8, got {}", c.where("dim"), c.full_key("dim"), o.dim);
  if (o.num_layers < 1) fail("{}: {}: expected >= 1", c.where("num_layers"), c.full_key("num_layers"));
  if (!(o.region_size > 0 && o.region_size <= 1))
    fail("{}: {}: expected a fraction of the image side in (0, 1]", c.where("region_size"), c.full_key("region_size"));
  return o;
}

MGRRLayerImpl::MGRRLayerImpl(const MGRRNetOptions& o, int64_t n) : o_(o) {
  const int64_t d = o.dim;
  if (o.region_level) {
    node_q = register_module("node_q", nn::Linear(d, d));
    node_k = register_module("node_k", nn::Linear(d, d));
    message = register_module("message", nn::Linear(d, d));
    prior = register_parameter("prior", torch::zeros({n, n}));
    node_norm = register_module("node_norm", nn::LayerNorm(nn::LayerNormOptions({d})));
  }
  if (o.pixel_level) {
    pixel_q = register_module("pixel_q", nn::Conv2d(nn::Conv2dOptions(d, d / 8, 1)));
    pixel_k = register_module("pixel_k", nn::Conv2d(nn::Conv2dOptions(d, d / 8, 1)));
    pixel_v = register_module("pixel_v", nn::Conv2d(nn::Conv2dOptions(d, d, 1)));
    pixel_scale = register_parameter("pixel_scale", torch::zeros({1}));
  }
  if (o.channel_level) channel_scale = register_parameter("channel_scale", torch::zeros({1}));
  if (o.pixel_level && o.channel_level) map_gate = register_module("map_gate", nn::Conv2d(nn::Conv2dOptions(2 * d, d, 1)));
  region_gate = register_module("region_gate", nn::Linear(2 * d, d));
  dropout = register_module("dropout", nn::Dropout(o.dropout));
}

torch::Tensor MGRRLayerImpl::region_graph(const torch::Tensor& x) {
  // Edges: how much AU j's region informs AU i, from their features and a learned prior.
  const double scale = 1.0 / std::sqrt(static_cast<double>(o_.dim));
  const torch::Tensor edges = torch::softmax(torch::matmul(node_q(x), node_k(x).transpose(1, 2)) * scale + prior, -1);
  return node_norm(x + dropout(torch::relu(message(torch::matmul(edges, x)))));
}

torch::Tensor MGRRLayerImpl::pixel_attention(const torch::Tensor& f) {
  const int64_t b = f.size(0), d = f.size(1), hw = f.size(2) * f.size(3);
  const torch::Tensor q = pixel_q(f).view({b, -1, hw}).transpose(1, 2);  // [B, hw, d/8]
  const torch::Tensor k = pixel_k(f).view({b, -1, hw});                  // [B, d/8, hw]
  const torch::Tensor edges = torch::softmax(torch::bmm(q, k), -1);      // [B, hw, hw]
  const torch::Tensor out = torch::bmm(pixel_v(f).view({b, d, hw}), edges.transpose(1, 2));
  return f + pixel_scale * out.view_as(f);
}

torch::Tensor MGRRLayerImpl::channel_attention(const torch::Tensor& f) {
  const int64_t b = f.size(0), d = f.size(1);
  const torch::Tensor x = f.view({b, d, -1});
  const torch::Tensor energy = torch::bmm(x, x.transpose(1, 2));  // [B, d, d]
  // DANet: softmax of (max - energy), so channels attend to the ones least like themselves.
  const torch::Tensor edges = torch::softmax(std::get<0>(energy.max(-1, true)).expand_as(energy) - energy, -1);
  return f + channel_scale * torch::bmm(edges, x).view_as(f);
}

std::pair<torch::Tensor, torch::Tensor> MGRRLayerImpl::forward(const torch::Tensor& regions, const torch::Tensor& map,
                                                               const torch::Tensor& centres, double side,
                                                               std::pair<int64_t, int64_t> image_size) {
  const torch::Tensor r = o_.region_level ? region_graph(regions) : regions;
  const torch::Tensor fp = o_.pixel_level ? pixel_attention(map) : map;
  const torch::Tensor fc = o_.channel_level ? channel_attention(map) : map;
  torch::Tensor fused = o_.pixel_level ? fp : fc;
  if (o_.pixel_level && o_.channel_level) {
    const torch::Tensor g = torch::sigmoid(map_gate(torch::cat({fp, fc}, 1)));
    fused = g * fp + (1 - g) * fc;
  }
  // The fused map seen at each AU's regions, gated with the AU's graph feature.
  const int64_t b = r.size(0), n = r.size(1), d = r.size(2);
  const torch::Tensor global = sample_regions(fused, centres, torch::tensor(side, centres.options()), image_size)
                                   .view({b, n, 2, d}).mean(2);
  const torch::Tensor z = torch::sigmoid(region_gate(torch::cat({r, global}, -1)));
  return {z * r + (1 - z) * global, fused};
}

MGRRNet::MGRRNet(MGRRNetOptions options) : options_(std::move(options)) {
  // torchvision names under backbone.: ImageNet weights load with convert: torchvision_resnet.
  backbone_ = register_module("backbone", backbone_registry().create(
      options_.backbone.size() > 0 ? options_.backbone : Config::parse(fmt::format("{{name: resnet{}, stages: 3}}", options_.backbone_depth))));
  const int64_t d = options_.dim, n = static_cast<int64_t>(options_.aus.size());
  reduce_ = register_module("reduce", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(backbone_->feature_info().back().channels, d, 1).bias(false)),
                                                     nn::BatchNorm2d(d), nn::ReLU(true)));
  layers_ = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < options_.num_layers; ++i) layers_->push_back(MGRRLayer(options_, n));
  classifier_weight_ = register_parameter("classifier_weight", torch::randn({n, d}) / std::sqrt(static_cast<double>(d)));
  classifier_bias_ = register_parameter("classifier_bias", torch::zeros({n}));
}

Outputs MGRRNet::forward(const data::Batch& batch) {
  const torch::Tensor& image = batch.fields.at("image");
  if (!batch.fields.contains("landmarks"))
    fail("mgrr_net needs facial landmarks in the batch (data.landmarks_dir for BP4D/DISFA, or facet data align)");
  const std::pair<int64_t, int64_t> size{image.size(2), image.size(3)};
  const torch::Tensor map = reduce_->forward(backbone_->forward_features(image).at(backbone_->feature_info().back().name));
  const int64_t b = image.size(0), n = static_cast<int64_t>(options_.aus.size()), d = options_.dim;
  const torch::Tensor centres = au_centres(batch.fields.at("landmarks"), options_.aus).view({b, 2 * n, 2});
  const double side = options_.region_size * static_cast<double>(size.second);
  torch::Tensor regions = sample_regions(map, centres, torch::tensor(side, centres.options()), size).view({b, n, 2, d}).mean(2);
  torch::Tensor global = map;
  for (const auto& layer : *layers_) std::tie(regions, global) = layer->as<MGRRLayer>()->forward(regions, global, centres, side, size);
  return {{"logits", (regions * classifier_weight_).sum(-1) + classifier_bias_}};
}

namespace {
FACET_REGISTER(model_registry(), "mgrr_net",
               "MGRR-Net AU detector (Ge et al., TIST 2024): region GNN + pixel/channel GAT + gated fusion, reconstructed",
               [](const Config& c) { return std::make_shared<MGRRNet>(MGRRNetOptions::from(c)); });
}  // namespace

}  // namespace facet::models::face
