// The truncated A3D DenseNet-121 of Yang et al., "Asymmetric 3D Context Fusion for Universal Lesion
// Detection" (MICCAI 2021), as released in M3DV/AlignShift and MIRACLE-Center/A3D_SATr
// (nn/models/truncated_densenet3d_a3d.py DenseNetCustomTrunc3dA3D, nn/operators/a3dconv.py), with the
// SATr blocks of satr.h switchable per stage (Trans_with_A3D). Facts: medical.md §3.2.
//
// Input [B, S, H, W]: S CT slices (the key slice in the middle), taken as one channel with S as a
// depth dimension. conv0 7x7/2 (no slice mixing), BN-ReLU, max pool (1, 3, 3)/(1, 2, 2), then dense
// blocks of 6, 12, 24 layers (growth 32, bottleneck 4) whose 1x1 and 3x3 convolutions are A3D
// convolutions: a 2-D kernel applied per slice after a learned slice mixing per input channel;
// transitions (BN-ReLU-1x1-avgpool (1, 2, 2)) between them. Every stage's S slices are reduced to one
// map by a Conv3d with kernel (S, 1, 1) ("reductionz"); with SATr on a stage, that map is fused with
// the block's output. An FPN-lite (1x1 laterals to `out_channels`, nearest x2 top-down sums) returns
// ONE stride-4 map: feature_info() = {p2, 4, out_channels}.
//
// Parameter names are the release's, which are torchvision's densenet121 names without `features.`
// (conv0, norm0, denseblock1.denselayer1.norm1, ..., transition1.conv), so the converter
// `torchvision_densenet` loads ImageNet weights the way the release does: every 2-D kernel as is,
// conv0's RGB kernel reduced to its green channel (the release keeps input channel 1, it does not sum),
// norm5 / denseblock4 / transition3 / classifier left out. The release also registers a slice-mixing
// tensor on the convolutions that do not mix (conv0, transitions; default depth 3): it is kept, frozen,
// so released checkpoints load strictly and parameter counts match (109,772,201 with SATr on all
// stages at S = 7, 16,039,209 without).
//
//   model:
//     backbone: {name: a3d_densenet121, num_slices: 7, out_channels: 512,
//                satr_stages: [true, true, true], norm: batch}   # norm: batch | frozen
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"
#include "models/backbones/satr.h"

#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace facet::models {

struct A3DDenseNetOptions {
  int64_t num_slices = 7;  // S: odd; SATr's key slice is S / 2
  int64_t growth_rate = 32;
  std::vector<int64_t> block_config = {6, 12, 24};
  int64_t bn_size = 4;
  int64_t num_init_features = 64;
  int64_t out_channels = 512;  // FPN-lite width (the released config's feature_channel)
  std::array<bool, 3> satr_stages = {false, false, false};
  SATrOptions satr;
  // batch: BatchNorm with batch statistics in training (the release's SyncBN on one process);
  // frozen: running statistics and affine parameters fixed (eval-mode BN, no gradients).
  std::string norm = "batch";

  static A3DDenseNetOptions from(const Config& c);
};

// A 2-D k x k convolution on every slice of [B, C, S, H, W], after the slice mixing
// out[b, c, k] = sum_d in[b, c, d] * adaptive_align_weights[d, k, c] when `mix` is on.
class A3DConvImpl : public torch::nn::Module {
 public:
  A3DConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool mix, int64_t num_slices);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;                  // [out, in, k, k]: torchvision's 2-D kernel
  torch::Tensor adaptive_align_weights;  // [S, S, in]; identity + U(-0.1, 0.1)

 private:
  int64_t stride_, padding_;
  bool mix_;
};
TORCH_MODULE(A3DConv);

class A3DDenseLayerImpl : public torch::nn::Module {
 public:
  A3DDenseLayerImpl(int64_t in, int64_t growth, int64_t bn_size, int64_t num_slices);
  torch::Tensor forward(const std::vector<torch::Tensor>& features);

  torch::nn::BatchNorm3d norm1{nullptr}, norm2{nullptr};
  A3DConv conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(A3DDenseLayer);

class A3DDenseBlockImpl : public torch::nn::Module {
 public:
  A3DDenseBlockImpl(int64_t layers, int64_t in, int64_t growth, int64_t bn_size, int64_t num_slices);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<A3DDenseLayer> layers_;
};
TORCH_MODULE(A3DDenseBlock);

class A3DTransitionImpl : public torch::nn::Module {
 public:
  A3DTransitionImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::BatchNorm3d norm{nullptr};
  A3DConv conv{nullptr};
};
TORCH_MODULE(A3DTransition);

// What one SATr stage produced, for tests and analysis.
struct A3DStageOutputs {
  std::vector<torch::Tensor> fused;   // per stage: [B, C_s, H_s, W_s], slice-reduced (and SATr-fused)
  std::vector<torch::Tensor> tokens;  // per stage: [B, 1 + N, D] SATr output tokens, undefined when off
};

class A3DDenseNetImpl : public Backbone {
 public:
  explicit A3DDenseNetImpl(A3DDenseNetOptions options);

  // [B, S, H, W] (H, W multiples of 32 with SATr, of 16 without) -> [B, out_channels, H / 4, W / 4].
  torch::Tensor forward(const torch::Tensor& slices, A3DStageOutputs* stages = nullptr);

  std::vector<FeatureInfo> feature_info() const override;
  TensorDict forward_features(const torch::Tensor& images) override;
  void train(bool on = true) override;  // keeps frozen BatchNorms in eval mode
  const A3DDenseNetOptions& options() const { return options_; }

  A3DConv conv0{nullptr};
  torch::nn::BatchNorm3d norm0{nullptr};

 private:
  A3DDenseNetOptions options_;
  std::vector<A3DDenseBlock> blocks_;
  std::vector<A3DTransition> transitions_;
  std::vector<torch::nn::Conv3d> reductions_;  // reductionz{s}.reduction_z_conv
  std::vector<torch::nn::Conv2d> laterals_;    // lateral2..lateral4 (index 0 = lateral2)
  std::vector<int64_t> stage_channels_;
  // SATr per stage (null when off).
  std::vector<torch::nn::Conv3d> patch_convs_;
  std::vector<SliceTokens> squeeze_;
  std::vector<SliceAttentionBlock> trans_;
  std::vector<TokenExpand> expand_;
  std::vector<SATrFusion> fusion_;
};
TORCH_MODULE(A3DDenseNet);

}  // namespace facet::models
