// The U-Net of milesial/Pytorch-UNet (Ronneberger et al. 2015 with BatchNorm and padded convs), in
// its module names (inc, down1..4 / maxpool_conv, up1..4 / up, conv, outc.conv) so that checkpoints
// of that code — GVS's segmentor among them — load by name; checked against PyTorch modules of that
// layout (tools/golden/pseudo_healthy_golden.py). 64 wide, bilinear, 1 channel, 2 classes: 17,266,306
// parameters.
//
// Model `unet`: a segmentation network with this U-Net (logits [B, classes, H, W]; loss
// `cross_entropy` with target: mask; metric `dice`) — e.g. the segmentor trained beforehand on real
// images with which GVS measures healthiness (experiments/generative/gvs_segmentor.yaml).
#pragma once

#include "core/config.h"

#include <torch/torch.h>

namespace facet::models::segmentation {

struct UNetOptions {
  int64_t in_channels = 1, classes = 2;
  int64_t width = 64;  // channels of the first level; doubled at each of the four downs
  bool bilinear = true;  // bilinear up-sampling (align_corners) and halved bottom; off: transposed convs

  static UNetOptions from(const Config& c);
};

// (3x3 conv, BatchNorm, ReLU) twice.
class DoubleConvImpl : public torch::nn::Module {
 public:
  DoubleConvImpl(int64_t in, int64_t out, int64_t mid);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential double_conv{nullptr};
};
TORCH_MODULE(DoubleConv);

// 2x2 max-pool, then DoubleConv.
class UNetDownImpl : public torch::nn::Module {
 public:
  UNetDownImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential maxpool_conv{nullptr};
};
TORCH_MODULE(UNetDown);

// Up-sample x (bilinear, or a 2x2 transposed conv halving its channels), pad it to the skip's size,
// concatenate [skip, x], DoubleConv.
class UNetUpImpl : public torch::nn::Module {
 public:
  UNetUpImpl(int64_t in, int64_t out, bool bilinear);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& skip);
  torch::nn::ConvTranspose2d up{nullptr};  // null when bilinear
  DoubleConv conv{nullptr};
};
TORCH_MODULE(UNetUp);

// The U-Net: any side (up-sampled maps are padded to their skip's size). Conv weights
// Kaiming-uniform (fan_out, ReLU), biases 0, as the reference initialises them.
class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // [B, classes, H, W] logits

  DoubleConv inc{nullptr};
  UNetDown down1{nullptr}, down2{nullptr}, down3{nullptr}, down4{nullptr};
  UNetUp up1{nullptr}, up2{nullptr}, up3{nullptr}, up4{nullptr};
  torch::nn::Sequential outc{nullptr};  // outc.conv: the 1x1 classifier
};
TORCH_MODULE(UNet);

}  // namespace facet::models::segmentation
