// A tiny stride-4 Backbone with one map (the shape of the A3D / SATr trunk's output), registered as
// `test_tiny_stride4` for the detector tests: three 3x3 convs (strides 2, 2, 1) with ReLU.
#pragma once

#include "models/backbones/backbone.h"

namespace facet::models::detection {

class TinyBackbone : public Backbone {
 public:
  explicit TinyBackbone(int64_t in_channels, int64_t channels = 32) : channels_(channels) {
    namespace nn = torch::nn;
    net_ = register_module("net", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in_channels, 16, 3).stride(2).padding(1)), nn::ReLU(true),
                                                 nn::Conv2d(nn::Conv2dOptions(16, channels, 3).stride(2).padding(1)), nn::ReLU(true),
                                                 nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)), nn::ReLU(true)));
  }
  std::vector<FeatureInfo> feature_info() const override { return {{"c4", 4, channels_}}; }
  TensorDict forward_features(const torch::Tensor& images) override { return {{"c4", net_->forward(images)}}; }

 private:
  int64_t channels_;
  torch::nn::Sequential net_{nullptr};
};

}  // namespace facet::models::detection
