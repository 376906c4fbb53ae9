#include "models/face/algr_net.h"

#include "models/face/au_regions.h"

#include <cmath>

namespace facet::models::face {
namespace nn = torch::nn;

ALGRNetOptions ALGRNetOptions::from(const Config& c) {
  ALGRNetOptions o;
  o.aus = c.get<std::vector<int>>("aus", o.aus);
  o.backbone_depth = c.get<int>("backbone_depth", o.backbone_depth);
  if (c.has("backbone")) {
    if (c.has("backbone_depth"))
      fail("{}: {}: give either backbone or backbone_depth", c.where("backbone_depth"), c.full_key("backbone_depth"));
    o.backbone = c.at("backbone");
  }
  o.dim = c.get<int64_t>("dim", o.dim);
  o.region_size = c.get<double>("region_size", o.region_size);
  o.region_points = c.get<int64_t>("region_points", o.region_points);
  o.adaptive_regions = c.get<bool>("adaptive_regions", o.adaptive_regions);
  o.max_shift = c.get<double>("max_shift", o.max_shift);
  o.max_scale = c.get<double>("max_scale", o.max_scale);
  o.skip_bilstm = c.get<bool>("skip_bilstm", o.skip_bilstm);
  o.lstm_layers = c.get<int64_t>("lstm_layers", o.lstm_layers);
  o.fusion = c.get<bool>("fusion", o.fusion);
  o.palsy_grades = c.get<int64_t>("palsy_grades", o.palsy_grades);
  o.dropout = c.get<double>("dropout", o.dropout);
  if (o.aus.empty()) fail("{}: {}: expected at least one AU", c.where("aus"), c.full_key("aus"));
  if (o.backbone_depth != 18 && o.backbone_depth != 34 && o.backbone_depth != 50 && o.backbone_depth != 101)
    fail("{}: {}: expected 18, 34, 50 or 101, got {}", c.where("backbone_depth"), c.full_key("backbone_depth"), o.backbone_depth);
  // dim / 2 per LSTM direction and for the adaptation and attention hidden layers.
  if (o.dim < 2 || o.dim % 2 != 0)
    fail("{}: {}: expected a positive even number, got {}", c.where("dim"), c.full_key("dim"), o.dim);
  if (!(o.region_size > 0 && o.region_size <= 1))
    fail("{}: {}: expected a fraction of the image side in (0, 1], got {}", c.where("region_size"), c.full_key("region_size"), o.region_size);
  if (o.region_points < 1 || o.region_points > 15)
    fail("{}: {}: expected 1..15 samples per side, got {}", c.where("region_points"), c.full_key("region_points"), o.region_points);
  if (!(o.max_shift >= 0 && o.max_shift <= 0.5))
    fail("{}: {}: expected a fraction of the image side in [0, 0.5], got {}", c.where("max_shift"), c.full_key("max_shift"), o.max_shift);
  if (!(o.max_scale >= 1 && o.max_scale <= 8))
    fail("{}: {}: expected a factor in [1, 8], got {}", c.where("max_scale"), c.full_key("max_scale"), o.max_scale);
  if (o.lstm_layers < 1)
    fail("{}: {}: expected >= 1, got {}", c.where("lstm_layers"), c.full_key("lstm_layers"), o.lstm_layers);
  if (o.palsy_grades < 0 || o.palsy_grades == 1)
    fail("{}: {}: expected 0 (no palsy head) or at least 2 grades, got {}", c.where("palsy_grades"), c.full_key("palsy_grades"),
         o.palsy_grades);
  if (!(o.dropout >= 0 && o.dropout < 1))
    fail("{}: {}: expected a probability in [0, 1), got {}", c.where("dropout"), c.full_key("dropout"), o.dropout);
  return o;
}

ALGRNet::ALGRNet(ALGRNetOptions options) : options_(std::move(options)) {
  // torchvision names under backbone.: ImageNet weights load with convert: torchvision_resnet.
  backbone_ = register_module("backbone", backbone_registry().create(
      options_.backbone.size() > 0 ? options_.backbone : Config::parse(fmt::format("{{name: resnet{}, stages: 3}}", options_.backbone_depth))));
  const int64_t d = options_.dim, h = d / 2;
  const int64_t n = num_aus_ = static_cast<int64_t>(options_.aus.size());
  reduce_ = register_module("reduce", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(backbone_->feature_info().back().channels, d, 1).bias(false)),
                                                     nn::BatchNorm2d(d), nn::ReLU(true)));
  if (options_.adaptive_regions) {
    adapt_hidden_ = register_module("adapt_hidden", nn::Linear(2 * d, h));
    region_embedding_ = register_parameter("region_embedding", torch::randn({2 * n, h}) * 0.02);
    adapt_out_ = register_module("adapt_out", nn::Linear(h, 3));
    // Zero: the first forward uses exactly JAA-Net's regions; training moves them from there.
    torch::NoGradGuard no_grad;
    adapt_out_->weight.zero_();
    adapt_out_->bias.zero_();
  }
  const double fan_in = static_cast<double>(2 * d);
  branch_weight_ = register_parameter("branch_weight", torch::randn({n, 2 * d, d}) * std::sqrt(2.0 / fan_in));
  branch_bias_ = register_parameter("branch_bias", torch::zeros({n, d}));
  if (options_.skip_bilstm) {
    lstms_ = register_module("lstms", nn::ModuleList());
    lstm_norms_ = register_module("lstm_norms", nn::ModuleList());
    for (int64_t i = 0; i < options_.lstm_layers; ++i) {
      lstms_->push_back(nn::LSTM(nn::LSTMOptions(d, h).num_layers(1).bidirectional(true).batch_first(true)));
      lstm_norms_->push_back(nn::LayerNorm(nn::LayerNormOptions({d})));
    }
  }
  if (options_.fusion) {
    global_proj_ = register_module("global_proj", nn::Linear(d, d));
    gate_ = register_module("gate", nn::Linear(2 * d, d));
    refine1_ = register_module("refine1", nn::Linear(d, 2 * d));
    refine2_ = register_module("refine2", nn::Linear(2 * d, d));
    refine_norm_ = register_module("refine_norm", nn::LayerNorm(nn::LayerNormOptions({d})));
  }
  classifier_weight_ = register_parameter("classifier_weight", torch::randn({n, d}) / std::sqrt(static_cast<double>(d)));
  classifier_bias_ = register_parameter("classifier_bias", torch::zeros({n}));
  if (options_.palsy_grades > 0) {
    asym_proj_ = register_module("asym_proj", nn::Linear(d, d));
    attn1_ = register_module("attn1", nn::Linear(d, h));
    attn2_ = register_module("attn2", nn::Linear(h, 1));
    palsy1_ = register_module("palsy1", nn::Linear(2 * d, d));
    palsy2_ = register_module("palsy2", nn::Linear(d, options_.palsy_grades));
  }
  dropout_ = register_module("dropout", nn::Dropout(options_.dropout));
}

std::pair<torch::Tensor, torch::Tensor> ALGRNet::adapt(const torch::Tensor& regions, const torch::Tensor& global,
                                                       std::pair<int64_t, int64_t> image_size) {
  const int64_t b = regions.size(0), m = regions.size(1);
  const torch::Tensor input = torch::cat({regions, global.unsqueeze(1).expand({b, m, global.size(1)})}, -1);
  const torch::Tensor o = adapt_out_(dropout_(torch::relu(adapt_hidden_(input) + region_embedding_)));  // [B, 2N, 3]
  const auto extent = torch::tensor({static_cast<double>(image_size.second), static_cast<double>(image_size.first)},
                                    regions.options());
  const torch::Tensor shift = torch::tanh(o.slice(-1, 0, 2)) * (options_.max_shift * extent);
  const torch::Tensor scale = torch::exp(torch::tanh(o.select(-1, 2)) * std::log(options_.max_scale));
  return {shift, scale};
}

Outputs ALGRNet::forward(const data::Batch& batch) {
  const torch::Tensor& image = batch.fields.at("image");
  if (!batch.fields.contains("landmarks"))
    fail("algr_net needs facial landmarks in the batch (data.landmarks_dir for BP4D/DISFA, landmarks.txt for palsy, "
         "or facet data align)");
  const std::pair<int64_t, int64_t> size{image.size(2), image.size(3)};
  const int64_t b = image.size(0), n = num_aus_, d = options_.dim, k = options_.region_points;
  const torch::Tensor map = reduce_->forward(backbone_->forward_features(image).at(backbone_->feature_info().back().name));  // [B, d, h, w]
  const torch::Tensor global = map.mean({2, 3});                                   // [B, d]

  // Regions: JAA-Net's landmark centres, then (adaptive) shifted and rescaled per face.
  torch::Tensor centres = au_centres(batch.fields.at("landmarks"), options_.aus).view({b, 2 * n, 2});
  torch::Tensor sides = torch::full({b, 2 * n}, options_.region_size * static_cast<double>(size.second), centres.options());
  torch::Tensor regions = sample_regions(map, centres, sides, size, k);  // [B, 2N, d]
  if (options_.adaptive_regions) {
    const auto [shift, scale] = adapt(regions, global, size);
    centres = centres + shift;
    sides = sides * scale;
    regions = sample_regions(map, centres, sides, size, k);
  }

  // Local AU branches: each AU's own linear layer over its two regions.
  const torch::Tensor pairs = regions.reshape({b, n, 2 * d});  // [A; B] features per AU
  torch::Tensor x = dropout_(torch::relu(torch::einsum("bnk,nkd->bnd", {pairs, branch_weight_}) + branch_bias_));

  // Skip-BiLSTM over the AU sequence: every BiLSTM layer adds to its input.
  if (options_.skip_bilstm)
    for (size_t i = 0; i < lstms_->size(); ++i) {
      const torch::Tensor y = std::get<0>(lstms_[i]->as<nn::LSTM>()->forward(x));
      x = lstm_norms_[i]->as<nn::LayerNorm>()->forward(x + dropout_(y));
    }

  // Fusion & refining: the whole face gated into each AU feature, then a residual MLP.
  if (options_.fusion) {
    const torch::Tensor g = torch::relu(global_proj_(global)).unsqueeze(1).expand({b, n, d});
    const torch::Tensor z = torch::sigmoid(gate_(torch::cat({x, g}, -1)));
    const torch::Tensor u = z * x + (1 - z) * g;
    x = refine_norm_(u + refine2_(dropout_(torch::relu(refine1_(u)))));
  }

  TensorDict out;
  out["logits"] = (x * classifier_weight_).sum(-1) + classifier_bias_;
  out["region_centres"] = centres;
  out["region_sides"] = sides;
  if (options_.palsy_grades > 0) {
    // Symmetry: the difference between the two regions of an AU (mirror landmarks for most AUs).
    const torch::Tensor per_side = regions.reshape({b, n, 2, d});
    const torch::Tensor asym = (per_side.select(2, 0) - per_side.select(2, 1)).abs();
    const torch::Tensor tokens = x + asym_proj_(asym);
    const torch::Tensor attention = torch::softmax(attn2_(torch::tanh(attn1_(tokens))).squeeze(-1), -1);  // [B, N]
    const torch::Tensor pooled = (attention.unsqueeze(-1) * tokens).sum(1);
    out["palsy_logits"] = palsy2_(dropout_(torch::relu(palsy1_(torch::cat({pooled, global}, -1)))));
    out["palsy_attention"] = attention;
  }
  return out;
}

namespace {
FACET_REGISTER(model_registry(), "algr_net",
               "ALGRNet AU detector + palsy severity (Ge et al., T-BIOM 2023): adaptive landmark regions, skip-BiLSTM, "
               "local-global fusion, reconstructed",
               [](const Config& c) { return std::make_shared<ALGRNet>(ALGRNetOptions::from(c)); });
}  // namespace

}  // namespace facet::models::face
