#include "models/face/dan.h"

#include "core/error.h"
#include "models/backbones/resnet.h"

#include <array>

namespace facet::models::face {
namespace nn = torch::nn;

DanTrunkImpl::DanTrunkImpl() {
  // torchvision's ResNet-18 builds (and initialises) the modules; they are registered under the
  // indices they have in `nn.Sequential(*list(resnet.children())[:-2])` — 2 (ReLU) and 3 (max-pool)
  // hold no parameters.
  ResNetOptions o;
  o.depth = 18;
  o.num_classes = 0;
  ResNet resnet(o);
  conv1 = register_module("0", resnet->conv1);
  bn1 = register_module("1", resnet->bn1);
  layer1 = register_module("4", resnet->layer1);
  layer2 = register_module("5", resnet->layer2);
  layer3 = register_module("6", resnet->layer3);
  layer4 = register_module("7", resnet->layer4);
}

torch::Tensor DanTrunkImpl::forward(const torch::Tensor& x) {
  auto y = torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
  return layer4->forward(layer3->forward(layer2->forward(layer1->forward(y))));
}

namespace {

nn::Sequential conv_bn(int64_t in, int64_t out, std::array<int64_t, 2> kernel, std::array<int64_t, 2> padding) {
  return nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(in, out, torch::ExpandingArray<2>(kernel)).padding(torch::ExpandingArray<2>(padding))),
      nn::BatchNorm2d(out));
}

}  // namespace

DanSpatialAttentionImpl::DanSpatialAttentionImpl() {
  conv1x1 = register_module("conv1x1", conv_bn(512, 256, {1, 1}, {0, 0}));
  conv_3x3 = register_module("conv_3x3", conv_bn(256, 512, {3, 3}, {1, 1}));
  conv_1x3 = register_module("conv_1x3", conv_bn(256, 512, {1, 3}, {0, 1}));
  conv_3x1 = register_module("conv_3x1", conv_bn(256, 512, {3, 1}, {1, 0}));
}

torch::Tensor DanSpatialAttentionImpl::forward(const torch::Tensor& x) {
  const auto y = conv1x1->forward(x);
  const auto map = torch::relu(conv_3x3->forward(y) + conv_1x3->forward(y) + conv_3x1->forward(y)).sum(1, /*keepdim=*/true);
  return x * map;
}

DanChannelAttentionImpl::DanChannelAttentionImpl() {
  attention = register_module("attention", nn::Sequential(nn::Linear(512, 32), nn::BatchNorm1d(32), nn::ReLU(true),
                                                          nn::Linear(32, 512), nn::Sigmoid()));
}

torch::Tensor DanChannelAttentionImpl::forward(const torch::Tensor& x) {
  const auto pooled = x.mean({2, 3});
  return pooled * attention->forward(pooled);
}

DanHeadImpl::DanHeadImpl() {
  sa = register_module("sa", DanSpatialAttention());
  ca = register_module("ca", DanChannelAttention());
  // The release's CrossAttentionHead.init_weights (BatchNorm1d keeps PyTorch's defaults there).
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kLeakyReLU);
      nn::init::zeros_(c->bias);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    } else if (auto* l = m->as<nn::Linear>()) {
      nn::init::normal_(l->weight, 0.0, 0.001);
      nn::init::zeros_(l->bias);
    }
  }
}

DanImpl::DanImpl(DanOptions options) : options_(options) {
  if (options_.num_classes < 1) fail("dan: num_classes must be >= 1, got {}", options_.num_classes);
  if (options_.num_heads < 1) fail("dan: num_heads must be >= 1, got {}", options_.num_heads);
  features = register_module("features", DanTrunk());
  for (int64_t i = 0; i < options_.num_heads; ++i)
    heads_.push_back(register_module(fmt::format("cat_head{}", i), DanHead()));
  fc = register_module("fc", nn::Linear(512, options_.num_classes));
  bn = register_module("bn", nn::BatchNorm1d(options_.num_classes));
}

DanOutput DanImpl::forward(const torch::Tensor& image) {
  if (image.dim() != 4 || image.size(1) != 3) fail("dan: expected an image batch [B, 3, H, W], got {}", image.sizes());
  DanOutput out;
  out.features = features->forward(image);
  std::vector<torch::Tensor> heads;
  heads.reserve(heads_.size());
  for (auto& h : heads_) heads.push_back(h->forward(out.features));
  out.heads = torch::stack(heads, 1);  // [B, heads, 512]
  // The heads compete per channel: log-softmax across them, so each attends to something else.
  if (out.heads.size(1) > 1) out.heads = torch::log_softmax(out.heads, 1);
  out.logits = bn->forward(fc->forward(out.heads.sum(1)));
  return out;
}

}  // namespace facet::models::face
