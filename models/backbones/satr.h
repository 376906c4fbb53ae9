// SATr: the Slice Attention Transformer block of Li et al., "SATr: Slice Attention with Transformer for
// Universal Lesion Detection" (MICCAI 2022), as released in MIRACLE-Center/A3D_SATr
// (nn/models/truncated_densenet3d_a3d.py, class Trans_with_A3D; facts: medical.md §3.2). One block
// sits after a dense stage of the A3D DenseNet (a3d_densenet.h) whose feature is [B, C, S, H, W]:
//
//   global tokens    Conv3d(C -> D, kernel (S, P, P), stride (1, P, P)) over all slices, with a CLS
//                    token in front (zeros at the first SATr stage, the previous block's CLS after)
//   slice tokens     per slice n (own weights): 1x1 conv C -> D, P x P average pool, LayerNorm, GELU,
//                    the CLS in front; the key (middle) slice also adds the global tokens
//   slice attention  V from the key slice's tokens, Q and K from a Linear over the other S - 1
//                    slices concatenated along channels; attention over token positions; the
//                    residual is the key slice's (un-normalised) tokens; then LayerNorm -> MLP
//   expand + fuse    tokens (CLS dropped) -> 1x1 conv D -> C, BN, ReLU, nearest upsampling x P;
//                    R = slice-reduced stage map: out = R + ReLU(BN(conv1x1(R + expanded)))
//
// Module and parameter names are the release's (squeeze_block1.conv_project1.weight, trans_block1.
// attn.qk.weight, ...) so its checkpoints load by name; the release hard-codes 7 slices (6 Q/K
// neighbours, key index 3), which is S - 1 and S / 2 here. Its thickness-aware scaling
// (Trans_thick_aware, off in the released config) is not implemented.
#pragma once

#include <torch/torch.h>

#include <string>

namespace facet::models {

struct SATrOptions {
  int64_t embed_dim = 384;
  int64_t num_heads = 6;
  double mlp_ratio = 4.0;
  double drop_path = 0.001;  // stochastic depth on both residual branches (training only)
  double ln_eps = 1e-6;
  double bn_eps = 1e-6;      // the BatchNorms of expand and fuse (Conformer's FCUUp / ConvBlock)
};

// Per-slice squeeze ("FCUDown", Fusion_manner 0): [B, C, S, H, W] + global tokens [B, 1 + N, D] ->
// [B, S, 1 + N, D].
class SliceTokensImpl : public torch::nn::Module {
 public:
  SliceTokensImpl(int64_t channels, int64_t num_slices, int64_t patch, const SATrOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& global_tokens);

 private:
  int64_t num_slices_, patch_;
  std::vector<torch::nn::Conv2d> project_;
  std::vector<torch::nn::LayerNorm> norm_;
};
TORCH_MODULE(SliceTokens);

// Attention with V from the key slice and Q, K from the other slices ("Attention").
class SliceAttentionImpl : public torch::nn::Module {
 public:
  SliceAttentionImpl(int64_t num_slices, const SATrOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // [B, S, N, D] -> [B, N, D]

  torch::nn::Linear qk{nullptr}, v{nullptr}, proj{nullptr};

 private:
  int64_t num_slices_, num_heads_;
};
TORCH_MODULE(SliceAttention);

// "Block": key-slice residual + slice attention, then the MLP.
class SliceAttentionBlockImpl : public torch::nn::Module {
 public:
  SliceAttentionBlockImpl(int64_t num_slices, const SATrOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // [B, S, N, D] -> [B, N, D]

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  SliceAttention attn{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};  // registered as mlp.fc1 / mlp.fc2

 private:
  double drop_path_;
};
TORCH_MODULE(SliceAttentionBlock);

// "FCUUp": tokens [B, 1 + h*w, D] -> [B, C, h * P, w * P].
class TokenExpandImpl : public torch::nn::Module {
 public:
  TokenExpandImpl(int64_t channels, int64_t patch, const SATrOptions& o);
  torch::Tensor forward(const torch::Tensor& tokens, int64_t h, int64_t w);

  torch::nn::Conv2d conv_project{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  int64_t patch_;
};
TORCH_MODULE(TokenExpand);

// "simple_ConvBlock": reduced + ReLU(BN(conv1x1(reduced + expanded))).
class SATrFusionImpl : public torch::nn::Module {
 public:
  SATrFusionImpl(int64_t channels, const SATrOptions& o);
  torch::Tensor forward(const torch::Tensor& reduced, const torch::Tensor& expanded);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
};
TORCH_MODULE(SATrFusion);

}  // namespace facet::models
