#include "models/backbones/a3d_densenet.h"

#include "core/error.h"
#include "models/weights/converter.h"

#include <cmath>
#include <regex>

namespace facet::models {
namespace nn = torch::nn;

namespace {
constexpr std::array<int64_t, 3> kPatch = {8, 4, 2};  // SATr token patch per stage: a 1/32 grid at every stage
}

A3DDenseNetOptions A3DDenseNetOptions::from(const Config& c) {
  A3DDenseNetOptions o;
  o.num_slices = c.get_in_range<int64_t>("num_slices", o.num_slices, Range::at_least(1));
  if (o.num_slices % 2 == 0) fail("{}: {}: expected an odd number of slices (the key slice in the middle), got {}",
                                  c.where("num_slices"), c.full_key("num_slices"), o.num_slices);
  o.out_channels = c.get_in_range<int64_t>("out_channels", o.out_channels, Range::at_least(1));
  const auto stages = c.get<std::vector<bool>>("satr_stages", {false, false, false});
  if (stages.size() != 3)
    fail("{}: {}: expected one flag per dense stage ([true, true, true]), got {} flags", c.where("satr_stages"),
         c.full_key("satr_stages"), stages.size());
  for (size_t i = 0; i < 3; ++i) o.satr_stages[i] = stages[i];
  const bool any_satr = stages[0] || stages[1] || stages[2];
  if (any_satr && o.num_slices < 3)
    fail("{}: {}: SATr attends from the key slice to its neighbours and needs num_slices >= 3, got {}",
         c.where("satr_stages"), c.full_key("satr_stages"), o.num_slices);
  o.satr.embed_dim = c.get_in_range<int64_t>("satr_embed_dim", o.satr.embed_dim, Range::at_least(1));
  o.satr.num_heads = c.get_in_range<int64_t>("satr_num_heads", o.satr.num_heads, Range::at_least(1));
  o.satr.drop_path = c.get_in_range<double>("satr_drop_path", o.satr.drop_path, Range::closed_open(0, 1));
  if (o.satr.embed_dim % o.satr.num_heads != 0)
    fail("{}: {}: satr_embed_dim {} is not divisible by satr_num_heads {}", c.where("satr_num_heads"), c.prefix(),
         o.satr.embed_dim, o.satr.num_heads);
  o.norm = c.get<std::string>("norm", o.norm);
  if (o.norm == "sync")
    fail("{}: {}: synchronised BatchNorm across processes is not implemented; on one process `batch` is the same "
         "arithmetic, and `frozen` fixes the statistics",
         c.where("norm"), c.full_key("norm"));
  if (o.norm != "batch" && o.norm != "frozen")
    fail("{}: {}: expected batch or frozen, got \"{}\"", c.where("norm"), c.full_key("norm"), o.norm);
  return o;
}

A3DConvImpl::A3DConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool mix,
                         int64_t num_slices)
    : stride_(stride), padding_(padding), mix_(mix) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  nn::init::kaiming_uniform_(weight, std::sqrt(5.0));  // PyTorch's default for convolutions
  // The release creates the mixing tensor with its default depth 3 where it does not mix.
  const int64_t depth = mix ? num_slices : 3;
  torch::Tensor align = torch::eye(depth).unsqueeze(-1).repeat({1, 1, in});
  align += torch::empty_like(align).uniform_(-0.1, 0.1);
  adaptive_align_weights = register_parameter("adaptive_align_weights", align, /*requires_grad=*/mix);
}

torch::Tensor A3DConvImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  if (mix_) {
    if (x.size(2) != adaptive_align_weights.size(0))
      fail("A3D convolution: the input has {} slices, the slice mixing was built for {}", x.size(2),
           adaptive_align_weights.size(0));
    y = torch::einsum("bcdhw,dkc->bckhw", {x, adaptive_align_weights});
  }
  return torch::conv3d(y, weight.unsqueeze(2), std::optional<torch::Tensor>(), {1, stride_, stride_}, {0, padding_, padding_});
}

A3DDenseLayerImpl::A3DDenseLayerImpl(int64_t in, int64_t growth, int64_t bn_size, int64_t num_slices) {
  norm1 = register_module("norm1", nn::BatchNorm3d(in));
  conv1 = register_module("conv1", A3DConv(in, bn_size * growth, 1, 1, 0, true, num_slices));
  norm2 = register_module("norm2", nn::BatchNorm3d(bn_size * growth));
  conv2 = register_module("conv2", A3DConv(bn_size * growth, growth, 3, 1, 1, true, num_slices));
}

torch::Tensor A3DDenseLayerImpl::forward(const std::vector<torch::Tensor>& features) {
  const auto bottleneck = conv1(torch::relu(norm1(torch::cat(features, 1))));
  return conv2(torch::relu(norm2(bottleneck)));
}

A3DDenseBlockImpl::A3DDenseBlockImpl(int64_t layers, int64_t in, int64_t growth, int64_t bn_size, int64_t num_slices) {
  for (int64_t i = 0; i < layers; ++i)
    layers_.push_back(register_module(fmt::format("denselayer{}", i + 1), A3DDenseLayer(in + i * growth, growth, bn_size, num_slices)));
}

torch::Tensor A3DDenseBlockImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> features{x};
  features.reserve(layers_.size() + 1);
  for (auto& layer : layers_) features.push_back(layer->forward(features));
  return torch::cat(features, 1);
}

A3DTransitionImpl::A3DTransitionImpl(int64_t in, int64_t out) {
  norm = register_module("norm", nn::BatchNorm3d(in));
  conv = register_module("conv", A3DConv(in, out, 1, 1, 0, false, 0));
}

torch::Tensor A3DTransitionImpl::forward(const torch::Tensor& x) {
  return torch::avg_pool3d(conv(torch::relu(norm(x))), {1, 2, 2}, {1, 2, 2});
}

A3DDenseNetImpl::A3DDenseNetImpl(A3DDenseNetOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  const int64_t s = o.num_slices;
  conv0 = register_module("conv0", A3DConv(1, o.num_init_features, 7, 2, 3, false, s));
  norm0 = register_module("norm0", nn::BatchNorm3d(o.num_init_features));
  int64_t channels = o.num_init_features;
  for (size_t i = 0; i < o.block_config.size(); ++i) {
    blocks_.push_back(register_module(fmt::format("denseblock{}", i + 1),
                                      A3DDenseBlock(o.block_config[i], channels, o.growth_rate, o.bn_size, s)));
    channels += o.block_config[i] * o.growth_rate;
    stage_channels_.push_back(channels);
    auto reduction = std::make_shared<nn::Module>();
    reductions_.push_back(reduction->register_module(
        "reduction_z_conv", nn::Conv3d(nn::Conv3dOptions(channels, channels, {s, 1, 1}).bias(false))));
    register_module(fmt::format("reductionz{}", i + 1), reduction);
    if (i + 1 < o.block_config.size()) {
      transitions_.push_back(register_module(fmt::format("transition{}", i + 1), A3DTransition(channels, channels / 2)));
      channels /= 2;
    }
  }
  // The release's initialisation: Kaiming-normal (fan-in) slice reductions; the A3D convolutions keep
  // PyTorch's default (they are not nn.Conv3d), BatchNorms unit.
  for (auto& r : reductions_) nn::init::kaiming_normal_(r->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
  for (size_t p = 0; p < stage_channels_.size(); ++p) {  // lateral2 (stride 4) .. lateral4 (stride 16)
    auto lateral = nn::Conv2d(nn::Conv2dOptions(stage_channels_[p], o.out_channels, 1));
    nn::init::kaiming_uniform_(lateral->weight, 1.0);
    nn::init::zeros_(lateral->bias);
    laterals_.push_back(register_module(fmt::format("lateral{}", p + 2), lateral));
  }
  // SATr modules are built after the trunk's initialisation and keep PyTorch's defaults, as released.
  patch_convs_.resize(3, nullptr);
  squeeze_.resize(3, nullptr);
  trans_.resize(3, nullptr);
  expand_.resize(3, nullptr);
  fusion_.resize(3, nullptr);
  for (size_t i = 0; i < 3; ++i) {
    if (!o.satr_stages[i]) continue;
    const int64_t c = stage_channels_[i], patch = kPatch[i];
    const auto n = std::to_string(i + 1);
    squeeze_[i] = register_module("squeeze_block" + n, SliceTokens(c, s, patch, o.satr));
    expand_[i] = register_module("expand_block" + n, TokenExpand(c, patch, o.satr));
    trans_[i] = register_module("trans_block" + n, SliceAttentionBlock(s, o.satr));
    patch_convs_[i] = register_module(
        "trans_patch_conv" + n,
        nn::Conv3d(nn::Conv3dOptions(c, o.satr.embed_dim, {s, patch, patch}).stride({1, patch, patch})));
    fusion_[i] = register_module("fusion_block" + n, SATrFusion(c, o.satr));
  }
  if (o.norm == "frozen") {
    for (auto& m : modules(false)) {
      for (auto& p : m->parameters(false))
        if (m->as<nn::BatchNorm3d>() || m->as<nn::BatchNorm2d>()) p.set_requires_grad(false);
    }
    train(is_training());
  }
}

void A3DDenseNetImpl::train(bool on) {
  Backbone::train(on);
  if (options_.norm != "frozen") return;
  for (auto& m : modules(false))
    if (m->as<nn::BatchNorm3d>() || m->as<nn::BatchNorm2d>()) m->eval();
}

torch::Tensor A3DDenseNetImpl::forward(const torch::Tensor& slices, A3DStageOutputs* stages) {
  const auto& o = options_;
  if (slices.dim() != 4 || slices.size(1) != o.num_slices)
    fail("a3d_densenet121: expected slices [B, {}, H, W], got {}", o.num_slices, slices.sizes());
  const bool satr = o.satr_stages[0] || o.satr_stages[1] || o.satr_stages[2];
  const int64_t multiple = satr ? 32 : 16;
  if (slices.size(2) % multiple != 0 || slices.size(3) % multiple != 0)
    fail("a3d_densenet121: H and W must be multiples of {} (pad the batch, data.pad_to), got {}x{}", multiple,
         slices.size(2), slices.size(3));
  auto x = torch::max_pool3d(torch::relu(norm0(conv0(slices.unsqueeze(1)))), {1, 3, 3}, {1, 2, 2}, {0, 1, 1});
  std::vector<torch::Tensor> fused;
  torch::Tensor cls;  // carried from one SATr stage to the next; zeros at the first
  for (size_t i = 0; i < blocks_.size(); ++i) {
    x = blocks_[i]->forward(x);
    auto reduced = reductions_[i]->forward(x).squeeze(2);
    torch::Tensor tokens;
    if (i < 3 && o.satr_stages[i]) {
      const int64_t h = x.size(3) / kPatch[i], w = x.size(4) / kPatch[i];
      auto global = patch_convs_[i]->forward(x).flatten(2).transpose(1, 2);  // [B, h*w, D]
      if (!cls.defined()) cls = torch::zeros({x.size(0), 1, o.satr.embed_dim}, global.options());
      global = torch::cat({cls, global}, 1);
      tokens = trans_[i]->forward(squeeze_[i]->forward(x, global));
      cls = tokens.narrow(1, 0, 1);
      reduced = fusion_[i]->forward(reduced, expand_[i]->forward(tokens, h, w));
    }
    fused.push_back(reduced);
    if (stages) stages->tokens.push_back(tokens);
    if (i < transitions_.size()) x = transitions_[i]->forward(x);
  }
  auto y = laterals_.back()->forward(fused.back());
  for (int64_t p = static_cast<int64_t>(fused.size()) - 2; p >= 0; --p) {
    const auto& lateral = fused[static_cast<size_t>(p)];
    namespace F = torch::nn::functional;
    y = F::interpolate(y, F::InterpolateFuncOptions().size(std::vector<int64_t>{lateral.size(2), lateral.size(3)}).mode(torch::kNearest)) +
        laterals_[static_cast<size_t>(p)]->forward(lateral);
  }
  if (stages) stages->fused = std::move(fused);
  return y;
}

std::vector<FeatureInfo> A3DDenseNetImpl::feature_info() const { return {{"p2", 4, options_.out_channels}}; }

TensorDict A3DDenseNetImpl::forward_features(const torch::Tensor& images) { return {{"p2", forward(images)}}; }

namespace {

FACET_REGISTER(backbone_registry(), "a3d_densenet121",
               "Truncated A3D DenseNet-121 on [B, S, H, W] CT slices with optional SATr blocks per stage; one stride-4 "
               "map p2 (num_slices, out_channels, satr_stages: [b, b, b], norm: batch | frozen)",
               [](const Config& c) { return A3DDenseNet(A3DDenseNetOptions::from(c)).ptr(); });

// torchvision densenet121 (state dict names `features.denseblock1.denselayer1.norm1.weight`, or the
// legacy `...norm.1.weight` of the original .pth) into the A3D DenseNet found in the model, as the
// release's init_weights does: `features.` dropped, conv0's RGB kernel cut to its green channel, the
// layers a truncated trunk lacks left out. The slice mixing, reductions, laterals and SATr blocks are
// not in the file and keep their initialisation (a non-strict entry).
ConversionPlan torchvision_densenet(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "denseblock1.denselayer1.conv1.adaptive_align_weights", "A3D DenseNet");
  static const std::regex legacy(R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
  ConversionPlan plan;
  std::vector<std::string> covers;
  for (const auto& t : file) {
    std::string name = t.name.starts_with("module.") ? t.name.substr(7) : t.name;
    std::smatch m;
    if (std::regex_match(name, m, legacy)) name = m[1].str() + m[2].str();
    if (name.starts_with("classifier.")) {
      plan.drop(t.name, "classifier (a detection trunk has none)");
      continue;
    }
    if (name.starts_with("features.")) name = name.substr(9);
    const std::string target = at + name;
    if (!model.count(target)) {
      if (name.starts_with("norm5.") || name.starts_with("denseblock4.") || name.starts_with("transition3.")) {
        plan.drop(t.name, "stage 4 (the A3D trunk is truncated after denseblock3)");
        continue;
      }
      plan.copy(t.name, target);  // the loader names it as unexpected
      continue;
    }
    covers.push_back(target);
    if (name == "conv0.weight" && t.shape.size() == 4 && t.shape[1] == 3) {
      TensorRecipe r;
      r.target = target;
      r.sources = {t.name};
      r.shape = {t.shape[0], 1, t.shape[2], t.shape[3]};
      r.make = [](const std::vector<torch::Tensor>& s) { return s[0].narrow(1, 1, 1).clone(); };
      r.note = "RGB kernel reduced to its green channel (the A3D release's single-channel input)";
      plan.tensors.push_back(std::move(r));
      continue;
    }
    plan.copy(t.name, target);
  }
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "torchvision_densenet",
               "torchvision DenseNet-121 -> the A3D DenseNet found in the model: conv0 cut to the green channel, "
               "stage 4 and the classifier left out (the A3D / SATr release's init_weights)",
               make_converter(torchvision_densenet));

}  // namespace
}  // namespace facet::models
