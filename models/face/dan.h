// DAN: Distract your Attention Network for facial expression recognition (Wen, Lin, Wang, Xu;
// Biomimetics 2023, arXiv 2109.07270), in the form EMMA uses as its frozen expression expert
// (face.md §4.1; released code JackYFL/EMMA_CoTEX_ABAW4 net/dan.py, itself yaoing/DAN's network).
//
// Taken from the released code: a torchvision ResNet-18 without avgpool/fc (512 x 7 x 7 at 224 px);
// `num_heads` parallel cross-attention heads, each a spatial attention (1x1 conv 512->256 + BN, then
// 3x3, 1x3 and 3x1 convs 256->512 + BN summed, ReLU, summed over channels into one map that
// multiplies the input) followed by a channel attention (global average pool, FC 512->32 + BN +
// ReLU, FC 32->512 + sigmoid, multiplying the pooled vector); the heads stacked, log-softmax
// across heads (when there is more than one), summed, FC 512->classes and BatchNorm1d(classes).
// The heads' initialisation (Kaiming-normal fan-out convs, N(0, 0.001) linears) is the code's.
// Not reproduced: DAN's own training losses (affinity and partition loss) — EMMA only runs it.
//
// Parameter names are the PyTorch module's, so a converted checkpoint (the reference's
// `model_state_dict`, written with safetensors.torch.save_file) loads by name:
//   features.0 conv1, features.1 bn1, features.4..7 layer1..layer4 (torchvision's blocks inside)
//   cat_head<i>.sa.conv1x1.{0 conv, 1 BN}, cat_head<i>.sa.conv_3x3 / conv_1x3 / conv_3x1.{0, 1}
//   cat_head<i>.ca.attention.{0 FC 512->32, 1 BN1d, 3 FC 32->512}
//   fc, bn
#pragma once

#include <torch/torch.h>

namespace facet::models::face {

struct DanOptions {
  int64_t num_classes = 8;  // AffectNet-8 (EMMA); the DAN release also has 7-class models
  int64_t num_heads = 4;
};

// The ResNet-18 trunk under the names of torchvision's `nn.Sequential(*children()[:-2])`.
class DanTrunkImpl : public torch::nn::Module {
 public:
  DanTrunkImpl();
  torch::Tensor forward(const torch::Tensor& x);  // [B, 512, H/32, W/32]

 private:
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
};
TORCH_MODULE(DanTrunk);

class DanSpatialAttentionImpl : public torch::nn::Module {
 public:
  DanSpatialAttentionImpl();
  torch::Tensor forward(const torch::Tensor& x);  // [B, 512, h, w] -> same, reweighted per position

 private:
  torch::nn::Sequential conv1x1{nullptr}, conv_3x3{nullptr}, conv_1x3{nullptr}, conv_3x1{nullptr};
};
TORCH_MODULE(DanSpatialAttention);

class DanChannelAttentionImpl : public torch::nn::Module {
 public:
  DanChannelAttentionImpl();
  torch::Tensor forward(const torch::Tensor& x);  // [B, 512, h, w] -> [B, 512]

 private:
  torch::nn::Sequential attention{nullptr};
};
TORCH_MODULE(DanChannelAttention);

class DanHeadImpl : public torch::nn::Module {
 public:
  DanHeadImpl();
  torch::Tensor forward(const torch::Tensor& x) { return ca->forward(sa->forward(x)); }

  DanSpatialAttention sa{nullptr};
  DanChannelAttention ca{nullptr};
};
TORCH_MODULE(DanHead);

struct DanOutput {
  torch::Tensor logits;    // [B, classes] (after the final BatchNorm1d)
  torch::Tensor features;  // [B, 512, h, w], the trunk's map
  torch::Tensor heads;     // [B, heads, 512], log-softmax over heads when there are several
};

class DanImpl : public torch::nn::Module {
 public:
  explicit DanImpl(DanOptions options = {});
  DanOutput forward(const torch::Tensor& image);  // image [B, 3, H, W], ImageNet-normalised
  const DanOptions& options() const { return options_; }

 private:
  DanOptions options_;
  DanTrunk features{nullptr};
  std::vector<DanHead> heads_;
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(Dan);

}  // namespace facet::models::face
