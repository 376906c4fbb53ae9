// MGRR-Net: Multi-level Graph Relational Reasoning Network for facial AU detection (Ge, Jose, Xu,
// Liu, Han; ACM TIST 2024, arXiv 2204.01349). Each layer reasons at three levels — a GNN over the AU
// region features, graph attention with pixels as nodes and with channels as nodes over the global
// face feature map — and fuses them with gated fusion cells; layers are stacked; one classifier
// per AU.
//
// Reconstructed (the paper's method section and code are not public; face.md §5): the abstract
// fixes the three levels, GNN/GAT, gated hierarchical fusion and stacking. Chosen here, the way
// JAA-Net / ME-GraphAU-era models do it, and each an option:
//   - trunk: torchvision ResNet-50 through layer3 (stride 16, ImageNet-loadable), 1x1 conv to `dim`;
//   - regions: JAA-Net's two landmark centres per AU (face.md §C.3), each sampled bilinearly on a
//     3x3 grid over a square of `region_size` x the image side, the two averaged;
//   - region GNN: dot-product attention adjacency between AU nodes plus a learned AU-AU prior
//     (softmax over neighbours), message MLP, residual + LayerNorm;
//   - pixel GAT: attention among the h*w positions (query/key at dim/8, as non-local/DANet blocks),
//     channel GAT: attention among the channels (DANet's channel attention); both residual with a
//     learned scale starting at 0;
//   - gated fusion: a sigmoid gate mixes the pixel- and channel-refined maps; a second gate per AU
//     mixes its GNN feature with the fused map sampled at its regions;
//   - 2 layers, dim 256, 176 x 176 input (JAA-Net protocol), weighted BCE + Dice (configs).
// Switching a level off (ablations): region_level / pixel_level / channel_level: false.
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"
#include "models/model.h"

#include <vector>

namespace facet::models::face {

struct MGRRNetOptions {
  std::vector<int> aus = {1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24};  // BP4D's 12
  int backbone_depth = 50;
  // A registered backbone instead (`backbone: {name: resnet50, stages: 3}`, backbone.h); empty: the
  // torchvision ResNet-{backbone_depth} through layer3. Its last feature map is the one used.
  Config backbone;
  int64_t dim = 256;
  int64_t num_layers = 2;
  double region_size = 0.25;  // region side as a fraction of the image side
  bool region_level = true, pixel_level = true, channel_level = true;
  double dropout = 0.1;

  static MGRRNetOptions from(const Config& c);
};

// One MGRR layer: (region features [B, N, d], global map [B, d, h, w]) -> both refined.
class MGRRLayerImpl : public torch::nn::Module {
 public:
  MGRRLayerImpl(const MGRRNetOptions& o, int64_t num_aus);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& regions, const torch::Tensor& map,
                                                  const torch::Tensor& centres, double side,
                                                  std::pair<int64_t, int64_t> image_size);

 private:
  torch::Tensor region_graph(const torch::Tensor& x);
  torch::Tensor pixel_attention(const torch::Tensor& f);
  torch::Tensor channel_attention(const torch::Tensor& f);

  MGRRNetOptions o_;
  // region GNN
  torch::nn::Linear node_q{nullptr}, node_k{nullptr}, message{nullptr};
  torch::Tensor prior;  // [N, N] learned AU-AU relation logits
  torch::nn::LayerNorm node_norm{nullptr};
  // pixel and channel GAT
  torch::nn::Conv2d pixel_q{nullptr}, pixel_k{nullptr}, pixel_v{nullptr};
  torch::Tensor pixel_scale, channel_scale;
  // gated fusion cells
  torch::nn::Conv2d map_gate{nullptr};
  torch::nn::Linear region_gate{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(MGRRLayer);

class MGRRNet : public Model {
 public:
  explicit MGRRNet(MGRRNetOptions options);
  // batch: image [B, 3, H, W], landmarks [B, K, 2] (K = 68, 66 or 49). Outputs: logits [B, N].
  Outputs forward(const data::Batch& batch) override;
  std::string default_visualizer() const override { return "multilabel"; }
  const MGRRNetOptions& options() const { return options_; }

 private:
  MGRRNetOptions options_;
  std::shared_ptr<Backbone> backbone_;
  torch::nn::Sequential reduce_{nullptr};  // 1x1 conv + BN + ReLU to dim
  torch::nn::ModuleList layers_{nullptr};
  torch::Tensor classifier_weight_, classifier_bias_;  // one linear classifier per AU: [N, d], [N]
};

}  // namespace facet::models::face
