#include "models/backbones/resnet.h"

#include "models/model.h"
#include "models/weights/converter.h"

#include <array>
#include <regex>

namespace facet::models {
namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(padding).bias(false));
}

nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv(in, out, 1, stride, 0), nn::BatchNorm2d(out));
}

}  // namespace

ResNetOptions ResNetOptions::from(const Config& c) {
  ResNetOptions o;
  o.depth = c.get<int>("depth", o.depth);
  o.num_classes = c.get<int64_t>("num_classes", o.num_classes);
  o.in_channels = c.get<int64_t>("in_channels", o.in_channels);
  o.zero_init_residual = c.get<bool>("zero_init_residual", o.zero_init_residual);
  o.stages = c.get<int>("stages", o.stages);
  if (o.stages < 1 || o.stages > 4) fail("{}: {}.stages: expected 1..4, got {}", c.where("stages"), c.prefix(), o.stages);
  if (o.stages < 4 && o.num_classes > 0)
    fail("{}: {}: a classifier needs all 4 stages; set num_classes: 0 for a truncated trunk", c.where("stages"), c.prefix());
  if (o.depth != 18 && o.depth != 34 && o.depth != 50 && o.depth != 101)
    fail("{}: {}.depth: expected 18, 34, 50 or 101, got {}", c.where("depth"), c.prefix(), o.depth);
  return o;
}

BasicBlockImpl::BasicBlockImpl(int64_t in, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", conv(in, planes, 3, stride, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (auto d = make_downsample(in, planes * expansion, stride)) downsample = register_module("downsample", d);
}

// In place, as torchvision's ReLU(inplace=True) and `out += identity`: batch norm's and addition's
// backward do not read their outputs, so overwriting them saves an allocation and a pass per op.
torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = bn1(conv1(x)).relu_();
  out = bn2(conv2(out));
  out += downsample ? downsample->forward(x) : x;
  return out.relu_();
}

BottleneckImpl::BottleneckImpl(int64_t in, int64_t planes, int64_t stride) {
  // torchvision's ResNet v1.5: the stride sits on the 3x3 convolution.
  conv1 = register_module("conv1", conv(in, planes, 1, 1, 0));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", conv(planes, planes * expansion, 1, 1, 0));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * expansion));
  if (auto d = make_downsample(in, planes * expansion, stride)) downsample = register_module("downsample", d);
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto out = bn1(conv1(x)).relu_();
  out = bn2(conv2(out)).relu_();
  out = bn3(conv3(out));
  out += downsample ? downsample->forward(x) : x;
  return out.relu_();
}

ResNetImpl::ResNetImpl(ResNetOptions options) : options_(options) {
  const bool bottleneck = options_.depth >= 50;
  const std::vector<int64_t> blocks = options_.depth == 18   ? std::vector<int64_t>{2, 2, 2, 2}
                                      : options_.depth == 101 ? std::vector<int64_t>{3, 4, 23, 3}
                                                              : std::vector<int64_t>{3, 4, 6, 3};
  conv1 = register_module("conv1", conv(options_.in_channels, 64, 7, 2, 3));
  bn1 = register_module("bn1", nn::BatchNorm2d(64));
  int64_t in = 64;
  auto make_layer = [&](int64_t planes, int64_t count, int64_t stride) {
    nn::Sequential layer;
    for (int64_t i = 0; i < count; ++i) {
      if (bottleneck) {
        layer->push_back(Bottleneck(in, planes, i == 0 ? stride : 1));
        in = planes * BottleneckImpl::expansion;
      } else {
        layer->push_back(BasicBlock(in, planes, i == 0 ? stride : 1));
        in = planes * BasicBlockImpl::expansion;
      }
    }
    return layer;
  };
  layer1 = register_module("layer1", make_layer(64, blocks[0], 1));
  if (options_.stages >= 2) layer2 = register_module("layer2", make_layer(128, blocks[1], 2));
  if (options_.stages >= 3) layer3 = register_module("layer3", make_layer(256, blocks[2], 2));
  if (options_.stages >= 4) layer4 = register_module("layer4", make_layer(512, blocks[3], 2));
  feature_channels_ = in;
  if (options_.num_classes > 0 && options_.stages == 4) fc = register_module("fc", nn::Linear(in, options_.num_classes));

  // torchvision's initialisation: Kaiming-normal (fan_out) convolutions, unit norms.
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
  if (options_.zero_init_residual) {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(false)) {
      if (auto* b = m->as<BottleneckImpl>()) b->bn3->weight.zero_();
      if (auto* b = m->as<BasicBlockImpl>()) b->bn2->weight.zero_();
    }
  }
  if (options_.norm == "frozen")
    for (auto& m : modules(false))
      if (m->as<nn::BatchNorm2d>())
        for (auto& p : m->parameters()) p.set_requires_grad(false);
  for (auto* frozen : frozen_parts())
    for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  train(is_training());
}

// The stem and layer1..k of frozen_stages k.
std::vector<torch::nn::Module*> ResNetImpl::frozen_parts() {
  std::vector<torch::nn::Module*> out;
  if (options_.frozen_stages < 0) return out;
  out = {conv1.get(), bn1.get()};
  const std::array<nn::Sequential*, 4> layers = {&layer1, &layer2, &layer3, &layer4};
  for (int i = 0; i < std::min(options_.frozen_stages, 4); ++i)
    if (*layers[static_cast<size_t>(i)]) out.push_back(layers[static_cast<size_t>(i)]->get());
  return out;
}

void ResNetImpl::train(bool on) {
  Backbone::train(on);
  if (!on) return;
  for (auto* frozen : frozen_parts()) frozen->eval();
  if (options_.norm == "frozen")
    for (auto& m : modules(false))
      if (m->as<nn::BatchNorm2d>()) m->eval();
}

std::vector<torch::Tensor> ResNetImpl::features(const torch::Tensor& x) {
  auto y = torch::max_pool2d(bn1(conv1(x)).relu_(), 3, 2, 1);
  std::vector<torch::Tensor> out;
  for (auto* layer : {&layer1, &layer2, &layer3, &layer4}) {
    if (!*layer) break;
    y = (*layer)->forward(y);
    out.push_back(y);
  }
  return out;
}

std::vector<FeatureInfo> ResNetImpl::feature_info() const {
  const int64_t expansion = options_.depth >= 50 ? BottleneckImpl::expansion : BasicBlockImpl::expansion;
  std::vector<FeatureInfo> out;
  for (int i = 0; i < options_.stages; ++i)
    out.push_back({fmt::format("layer{}", i + 1), int64_t{4} << i, (int64_t{64} << i) * expansion});
  return out;
}

TensorDict ResNetImpl::forward_features(const torch::Tensor& images) {
  const auto maps = features(images);
  TensorDict out;
  for (size_t i = 0; i < maps.size(); ++i) out[fmt::format("layer{}", i + 1)] = maps[i];
  return out;
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& x) {
  auto pooled = torch::flatten(torch::adaptive_avg_pool2d(features(x).back(), {1, 1}), 1);
  return fc ? fc(pooled) : pooled;
}

namespace {

// The registered classifier: a ResNet on the batch field `input`, producing `logits`.
class ResNetClassifier : public Model {
 public:
  explicit ResNetClassifier(const Config& c) : input_(c.get<std::string>("input", "image")) {
    net_ = register_module("net", ResNet(ResNetOptions::from(c)));
  }
  Outputs forward(const data::Batch& batch) override { return {{"logits", net_->forward(batch.fields.at(input_))}}; }

 private:
  std::string input_;
  ResNet net_{nullptr};
};

FACET_REGISTER(model_registry(), "resnet", "ResNet-18/34/50/101 classifier, torchvision layout (depth, num_classes)",
               [](const Config& c) { return std::make_shared<ResNetClassifier>(c); });

void read_freezing(const Config& c, ResNetOptions& o) {
  o.norm = c.get<std::string>("norm", o.norm);
  if (o.norm != "batch" && o.norm != "frozen")
    fail("{}: {}: expected batch or frozen, got \"{}\"", c.where("norm"), c.full_key("norm"), o.norm);
  o.frozen_stages = c.get<int>("frozen_stages", o.frozen_stages);
  if (o.frozen_stages < -1 || o.frozen_stages > o.stages)
    fail("{}: {}: expected -1 (none) .. {} (the stem and every stage), got {}", c.where("frozen_stages"),
         c.full_key("frozen_stages"), o.stages, o.frozen_stages);
}

// Backbones: a trunk without classifier; `stages: 3` stops at layer3 (stride 16).
std::shared_ptr<Backbone> resnet_backbone(const Config& c, int depth) {
  if (c.has("depth"))
    fail("{}: {}: the backbone's name fixes the depth ({})", c.where("depth"), c.full_key("depth"), depth);
  ResNetOptions o;
  o.depth = depth;
  o.num_classes = 0;
  o.in_channels = c.get<int64_t>("in_channels", o.in_channels);
  o.zero_init_residual = c.get<bool>("zero_init_residual", o.zero_init_residual);
  o.stages = c.get<int>("stages", o.stages);
  if (o.stages < 1 || o.stages > 4) fail("{}: {}: expected 1..4, got {}", c.where("stages"), c.full_key("stages"), o.stages);
  read_freezing(c, o);
  return ResNet(o).ptr();
}

FACET_REGISTER(backbone_registry(), "resnet18", "ResNet-18 trunk, torchvision names: layer1..4 at strides 4/8/16/32 (stages, in_channels)",
               [](const Config& c) { return resnet_backbone(c, 18); });
FACET_REGISTER(backbone_registry(), "resnet34", "ResNet-34 trunk, torchvision names: layer1..4 at strides 4/8/16/32 (stages, in_channels)",
               [](const Config& c) { return resnet_backbone(c, 34); });
FACET_REGISTER(backbone_registry(), "resnet50", "ResNet-50 trunk, torchvision names: layer1..4 at strides 4/8/16/32 (stages, in_channels)",
               [](const Config& c) { return resnet_backbone(c, 50); });
FACET_REGISTER(backbone_registry(), "resnet101", "ResNet-101 trunk, torchvision names: layer1..4 at strides 4/8/16/32 (stages, in_channels)",
               [](const Config& c) { return resnet_backbone(c, 101); });

// torchvision ResNet state dicts (conv1, bn1, layer1..4, fc; a DDP `module.` prefix stripped) into
// the ResNet found in the model: this layout, or the Sequential trunk layout features.0 (conv1),
// features.1 (bn1), features.4..7 (layer1..4). Layers the model's ResNet lacks — layer4 of a stride-16
// trunk, fc of a feature extractor — are left out, not errors.
ConversionPlan torchvision_resnet(const SourceTensors& file, const TargetShapes& model) {
  const auto facet_layout = prefixes_of(model, "layer1.0.conv1.weight");
  const auto sequential = prefixes_of(model, "features.4.0.conv1.weight");
  if (facet_layout.size() + sequential.size() != 1) {
    std::vector<std::string> all;
    for (const auto& p : facet_layout) all.push_back(p.empty() ? "(top level)" : p);
    for (const auto& p : sequential) all.push_back(p + "features.");
    if (all.empty()) fail("the model (in this entry's scope) has no ResNet (no tensor named ...layer1.0.conv1.weight); is add_prefix right?");
    fail("the model holds {} ResNets ({}); choose one with add_prefix", all.size(), join(all));
  }
  const bool seq = facet_layout.empty();
  const std::string at = seq ? sequential.front() + "features." : facet_layout.front();
  static const std::regex layer(R"(^layer(\d)\.(.*)$)");
  ConversionPlan plan;
  for (const auto& t : file) {
    const std::string name = t.name.starts_with("module.") ? t.name.substr(7) : t.name;
    std::string target = name;
    std::smatch m;
    if (seq) {
      if (name.starts_with("conv1.")) target = "0." + name.substr(6);
      else if (name.starts_with("bn1.")) target = "1." + name.substr(4);
      else if (std::regex_match(name, m, layer)) target = std::to_string(3 + std::stoi(m[1].str())) + "." + m[2].str();
    }
    if (!model.count(at + target)) {
      if (name.starts_with("fc.")) {
        plan.drop(t.name, "classifier (the model's ResNet has none)");
        continue;
      }
      const bool stage = std::regex_match(name, m, layer);
      if (stage && !model.count(at + (seq ? std::to_string(3 + std::stoi(m[1].str())) : "layer" + m[1].str()) + ".0.conv1.weight")) {
        plan.drop(t.name, fmt::format("layer{} (the model's trunk stops before it)", m[1].str()));
        continue;
      }
    }
    plan.copy(t.name, at + target);
  }
  std::vector<std::string> covers;
  for (const auto& [name, shape] : model)
    if (name.starts_with(at)) covers.push_back(name);
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "torchvision_resnet",
               "torchvision ResNet-18/34/50/101 -> the ResNet found in the model (Facet layout under any prefix, or "
               "the features.N trunk of DAN); a truncated trunk's layers and a missing classifier left out",
               make_converter(torchvision_resnet));

}  // namespace
}  // namespace facet::models
