// Masked CoTEX: co-training of several MAE-pre-trained ViTs, each seeing its own random subset of
// patch tokens, with a Jensen-Shannon consistency between their predictions — ICT-VIPL's entry to
// the ABAW4 learning-from-synthetic-data (LSD) expression challenge (Li et al., arXiv 2207.11679).
//
// Taken from the released code (JackYFL/EMMA_CoTEX_ABAW4 Masked_CoTEX_main.py, net/mae_vit.py;
// face.md §4.5): `views` (vit_num, 2) ViT-B/16s with a Linear(768 -> classes = 6) head on the
// final-norm CLS token; in training each drops patch tokens independently per sample and per view
// the MAE-encoder way (position embeddings added, the ⌊N (1 - mask_ratio)⌋ tokens of smallest
// uniform noise kept, CLS prepended); evaluation uses every token; the prediction is the sum of
// the views' logits. Loss (losses/consistency.cpp, multi_view_ce_js): mean CE over views + 100 JS.
// Each ViT may start from its own checkpoint (the release's pretrained_model_paths: n paths for
// views % n == 0, view i from path i / (views / n)): one train.init_weights entry per view, the
// constructor reads no file. The head's weight starts at N(0, 2e-5) as in MAE fine-tuning, its bias at 0.
// Reconstructed: the mask ratio. The release's default is 0 and its script passes none; the paper
// says most patches are masked. Default 0.75 here: MAE's ratio, and the release's batch rule
// (64 x ⌊1 / (1 - mask_ratio)⌋) then gives an integer factor of 4 (face.md §4.5). Configurable.
//
// Parameter names: vits.<i>.* (MAE / timm names, head at vits.<i>.head), so view i of the release
// (its `vit.*` state dict) loads with {strip_prefix: vit., add_prefix: vits.<i>.}.
//
//   model: {name: masked_cotex, views: 2, num_classes: 6, mask_ratio: 0.75, vit: {...}}
//   train:
//     init_weights:   # both views from the CelebA MAE checkpoint (MAE / timm names)
//       - {path: mae_norm.safetensors, convert: timm_vit, add_prefix: vits.0.}
//       - {path: mae_norm.safetensors, convert: timm_vit, add_prefix: vits.1.}
// Outputs: view_logits [V, B, C], logits [B, C] (their sum); while masking, view_masks [V, B, N]
// (1 = dropped patch, MAE's convention).
#pragma once

#include "core/config.h"
#include "models/backbones/vit.h"
#include "models/model.h"

#include <string>
#include <vector>

namespace facet::models::face {

struct MaskedCotexOptions {
  ViTOptions vit = default_vit();
  std::string input = "image";
  int64_t views = 2, num_classes = 6;
  double mask_ratio = 0.75;

  static ViTOptions default_vit();  // B/16 at 224, stochastic depth 0.1
  static MaskedCotexOptions from(const Config& c);
};

class MaskedCotex : public Model, public LayerDepths {
 public:
  explicit MaskedCotex(MaskedCotexOptions options);
  Outputs forward(const data::Batch& batch) override;

  int64_t num_layer_ids() const override { return vits_.front()->num_layer_ids(); }
  int64_t layer_id(const std::string& parameter_name) const override;

  const MaskedCotexOptions& options() const { return options_; }
  ViT& view(size_t i) { return vits_.at(i); }

 private:
  MaskedCotexOptions options_;
  std::vector<ViT> vits_;
  std::vector<torch::nn::Linear> heads_;
};

}  // namespace facet::models::face
