// ResNet-18/34/50/101 (He et al. 2016) with torchvision's layout and parameter names, so
// torchvision checkpoints load by name (conv1, bn1, layer1.0.conv1, ..., fc) and the outputs match.
// A Backbone (backbone.h): registered as resnet18/34/50/101 with layer1..layer4 at strides 4..32.
// The weight converter `torchvision_resnet` (resnet.cpp) finds a ResNet anywhere in a model — this
// layout under a prefix (net., backbone.) or torchvision's `nn.Sequential(*children()[:-2])` trunk
// (features.0/1/4..7, as DAN keeps it) — and leaves out the layers a truncated trunk does not have.
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"

#include <torch/torch.h>

#include <vector>

namespace facet::models {

struct ResNetOptions {
  int depth = 50;            // 18, 34, 50 or 101
  int64_t num_classes = 1000;  // 0: no classifier (feature extractor)
  int64_t in_channels = 3;
  bool zero_init_residual = false;
  int stages = 4;  // build layer1..layer{stages}: 3 = a stride-16 trunk for region-based face models
  // Detection trunks as torchvision's fasterrcnn_resnet50_fpn and mmdet build them: `frozen` norms
  // keep their statistics and affine parameters (FrozenBatchNorm2d: eval-mode BN, no gradients), and
  // `frozen_stages` k >= 0 fixes the stem and layer1..k (mmdet's meaning; torchvision's default of 3
  // trainable layers is 1). -1: everything trains.
  std::string norm = "batch";  // batch | frozen
  int frozen_stages = -1;

  static ResNetOptions from(const Config& c);
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::BatchNorm2d last_norm() { return bn2; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t expansion = 4;
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::BatchNorm2d last_norm() { return bn3; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public Backbone {
 public:
  explicit ResNetImpl(ResNetOptions options);
  torch::Tensor forward(const torch::Tensor& x);  // logits, or pooled features when num_classes = 0
  void train(bool on = true) override;            // keeps frozen norms and stages in eval mode
  // The outputs of layer1..layer{stages} (strides 4, 8, 16, 32), for detectors and face models.
  std::vector<torch::Tensor> features(const torch::Tensor& x);
  int64_t feature_channels() const { return feature_channels_; }

  // Backbone: "layer1".."layer{stages}".
  std::vector<FeatureInfo> feature_info() const override;
  TensorDict forward_features(const torch::Tensor& images) override;
  const ResNetOptions& options() const { return options_; }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  std::vector<torch::nn::Module*> frozen_parts();
  ResNetOptions options_;
  int64_t feature_channels_ = 0;
};
TORCH_MODULE(ResNet);

}  // namespace facet::models
