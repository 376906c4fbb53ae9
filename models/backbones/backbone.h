// Backbone: a module that maps an image batch to named feature maps, each with a known stride and
// channel count, so detectors, vision-language towers and face models pick their trunk by name from
// config (`model.backbone: {name: resnet50, stages: 3}`) and size their necks and heads from
// feature_info() instead of hard-coding a network. Registered: resnet18/34/50/101 (layer1..layer4 at
// strides 4, 8, 16, 32, torchvision names) and vit (patch tokens as a map at the patch stride).
//
// A backbone's parameters are its own names (conv1.weight, layer1.0...; patch_embed.proj.weight,
// blocks.0...), so a model that registers it as `backbone` has backbone.conv1.weight — the names of
// the published checkpoints under one prefix (init_weights with convert: torchvision_resnet finds it).
#pragma once

#include "core/registry.h"
#include "core/tensor_dict.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::models {

struct FeatureInfo {
  std::string name;  // "layer3", "block12"
  int64_t stride;    // input pixels per feature-map pixel
  int64_t channels;
};

class Backbone : public torch::nn::Module {
 public:
  // The maps forward_features returns, shallowest first.
  virtual std::vector<FeatureInfo> feature_info() const = 0;
  // images [B, C, H, W] -> {name: [B, channels, H / stride, W / stride]} for every feature_info() entry.
  virtual TensorDict forward_features(const torch::Tensor& images) = 0;
};

using BackboneRegistry = Registry<std::shared_ptr<Backbone>>;
BackboneRegistry& backbone_registry();

}  // namespace facet::models
