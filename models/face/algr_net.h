// ALGRNet: Adaptive Local-Global Relational Network for facial AU recognition and facial palsy
// estimation (Ge, Jose, Wang, Iyer, Liu, Han; arXiv 2203.01800, IEEE T-BIOM 2023; predecessor LGRNet,
// FG 2021). Local AU features from regions adapted around the landmark AU centres, a skip-BiLSTM over
// the AU sequence, local-global gated fusion and refining, one classifier per AU; a severity head on
// the same AU features for facial palsy.
//
// Taken from the abstracts (face.md §6.1): the three modules — adaptive muscle regions learnt from
// the detected landmarks (instead of fixed regular regions around pre-defined centres), a skip-BiLSTM
// modelling mutual assistance / exclusion among the local AU features, a fusion & refining module
// using the complementarity of the local AU features and the whole face ("local-global gated
// fusion", third-party summary) — the multi-branch design (one local branch per AU), BP4D and DISFA,
// and the palsy migration, whose T-BIOM abstract says severity is assessed by combining the muscle
// regions symmetrically. Reconstructed (method section and code are not public), the way JAA-Net /
// ME-GraphAU-era models do it and consistent with mgrr_net.h, each an option:
//   - trunk: torchvision ResNet-50 through layer3 (stride 16; ImageNet weights through train.init_weights
//     {path: resnet50.safetensors, convert: torchvision_resnet}, which leaves layer4 and fc out), 1x1
//     conv + BN + ReLU to `dim` = 256; the global face vector is the mean of that map;
//   - regions: JAA-Net's two landmark centres per AU (face.md §C.3, models/face/au_regions.h), a
//     square of `region_size` = 0.25 x the image side, bilinear k x k sampling (k = 3);
//   - adaptive region learning: from each region's features at its JAA-Net placement and the global
//     vector (plus a learned embedding of which region it is), a 2-layer MLP predicts a shift
//     bounded by tanh to `max_shift` = 0.1 x the image side and a log-scale bounded to
//     [1/`max_scale`, `max_scale`] = [1/2, 2] of the side; its last layer starts at zero, so training
//     starts from the landmark regions (as deformable-conv offsets do) and AUs sharing JAA-Net centres
//     (AU12/14/15, AU23/24) can move apart; the features are re-sampled at the adapted squares,
//     differentiably in the shift and scale;
//   - local AU branches: per AU, an independent linear layer on its two regions' features
//     (concatenated) to `dim`, ReLU;
//   - skip-BiLSTM: `lstm_layers` = 2 single-layer bidirectional LSTMs (dim / 2 per direction) over the
//     N AU features in the dataset's AU order, each wrapped in a residual (skip) connection + LayerNorm;
//   - fusion & refining: the projected global vector is gated into every AU feature (per channel,
//     sigmoid of [local; global]), then a residual MLP (dim -> 2 dim -> dim) + LayerNorm refines it;
//   - per-AU linear classifiers -> outputs["logits"] [B, N]; the adapted regions are outputs too
//     (region_centres [B, 2N, 2] in input pixels, region_sides [B, 2N]);
//   - palsy head (palsy_grades > 0): each refined AU feature plus a projection of the asymmetry of
//     its two regions |f_A - f_B| (the paired JAA-Net centres are left/right mirror landmarks for all
//     AUs but AU23/24/25, whose pair is upper/lower lip), attention pooling over the AUs, then an MLP
//     on [pooled; global] -> outputs["palsy_logits"] [B, grades] and ["palsy_attention"] [B, N];
//   - dropout 0.1; loss, optimiser and input protocol in experiments/algr_net/ (JAA-Net recipe).
// Ablations: adaptive_regions / skip_bilstm / fusion: false remove the module (fixed JAA-Net regions;
// AU branches straight to fusion; no global vector in the AU features, no refining).
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"
#include "models/model.h"

#include <string>
#include <vector>

namespace facet::models::face {

struct ALGRNetOptions {
  std::vector<int> aus = {1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24};  // BP4D's 12
  int backbone_depth = 50;
  // A registered backbone instead (`backbone: {name: resnet50, stages: 3}`, backbone.h); empty: the
  // torchvision ResNet-{backbone_depth} through layer3. Its last feature map is the one used.
  Config backbone;
  int64_t dim = 256;
  double region_size = 0.25;   // base region side, fraction of the image width
  int64_t region_points = 3;   // k: the k x k bilinear samples averaged per region
  bool adaptive_regions = true;
  double max_shift = 0.1;      // fraction of the image side (per axis)
  double max_scale = 2.0;      // region side in [side / max_scale, side * max_scale]
  bool skip_bilstm = true;
  int64_t lstm_layers = 2;
  bool fusion = true;
  int64_t palsy_grades = 0;    // 0: no palsy head
  double dropout = 0.1;

  static ALGRNetOptions from(const Config& c);
};

class ALGRNet : public Model {
 public:
  explicit ALGRNet(ALGRNetOptions options);
  // batch: image [B, 3, H, W], landmarks [B, K, 2] (K = 68, 66 or 49, input pixels).
  Outputs forward(const data::Batch& batch) override;
  std::string default_visualizer() const override { return "multilabel"; }
  const ALGRNetOptions& options() const { return options_; }

 private:
  // Region shifts [B, 2N, 2] (pixels) and side factors [B, 2N] from the regions at their JAA-Net places.
  std::pair<torch::Tensor, torch::Tensor> adapt(const torch::Tensor& regions, const torch::Tensor& global,
                                                std::pair<int64_t, int64_t> image_size);

  ALGRNetOptions options_;
  int64_t num_aus_ = 0;
  std::shared_ptr<Backbone> backbone_;
  torch::nn::Sequential reduce_{nullptr};  // 1x1 conv + BN + ReLU to dim
  // adaptive region learning
  torch::nn::Linear adapt_hidden_{nullptr}, adapt_out_{nullptr};
  torch::Tensor region_embedding_;  // [2N, dim / 2]
  // local AU branches: [N, 2 dim, dim], [N, dim]
  torch::Tensor branch_weight_, branch_bias_;
  // skip-BiLSTM
  torch::nn::ModuleList lstms_{nullptr}, lstm_norms_{nullptr};
  // fusion & refining
  torch::nn::Linear global_proj_{nullptr}, gate_{nullptr}, refine1_{nullptr}, refine2_{nullptr};
  torch::nn::LayerNorm refine_norm_{nullptr};
  torch::Tensor classifier_weight_, classifier_bias_;  // [N, dim], [N]
  // palsy head
  torch::nn::Linear asym_proj_{nullptr}, attn1_{nullptr}, attn2_{nullptr}, palsy1_{nullptr}, palsy2_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};

}  // namespace facet::models::face
