// EMMA: the multi-task affect model of ICT-VIPL for the ABAW4 MTL challenge (Li, Sun, Liu, Han,
// Shan; "Affective Behaviour Analysis Using Pretrained Model with Facial Prior", ECCV 2022
// workshops, arXiv 2207.11679) — an MAE-pre-trained ViT predicts expressions and AUs, a frozen
// expression CNN (DAN) adds a facial prior, and valence-arousal is regressed from both.
//
// Taken from the released code (JackYFL/EMMA_CoTEX_ABAW4 net/EMMA.py, net/mae_vit.py; face.md §4.1):
//   - ViT-B/16, LayerNorm eps 1e-6, stochastic depth 0.1, final norm + CLS token (no global pool);
//     its head replaced by Linear(768->512) -> ReLU -> Linear(512->20): 8 expression + 12 AU logits;
//   - DAN (dan.h) on the same input, 8 AffectNet classes, requires_grad false but NOT put in eval
//     mode: it follows the model's train()/eval() like every submodule, so its BatchNorm running
//     statistics keep updating during training, exactly as the release does (it only freezes the
//     parameters and calls model.train() / model.eval() on the whole model);
//   - VA head on concat(DAN's 8 logits, the ViT's 20 logits) = 28 -> 256 -> ReLU -> 2, no squashing;
//     the VA loss back-propagates into the ViT (nothing is detached).
// Parameter names follow the release's module, so its checkpoints load by name (train.init_weights):
// vit.* (timm / MAE names, head at vit.head.0 / vit.head.2), cnn.* (DAN names, dan.h), va_head.0 / .2.
// Choices here (not in the release): `dan: false` drops the CNN branch (VA head on the 20 ViT logits),
// `freeze_dan: false` trains it — both for ablations. The constructor reads no file: the MAE ViT, the
// DAN and whole EMMA checkpoints come through train.init_weights (a frozen DAN that no entry loads
// keeps its random initialisation, and init_weights' report lists it among the tensors left as built):
//
//   model:
//     name: emma
//     vit: {embed_dim: 768, depth: 12, num_heads: 12, drop_path: 0.1}   # ViTOptions; B/16 by default
//   train:
//     init_weights:
//       - {path: mae_norm.safetensors, convert: timm_vit, add_prefix: vit.}   # MAE / timm names (hf_vit: Hugging Face)
//       - {path: affecnet8.safetensors, add_prefix: cnn.}                      # the DAN's model_state_dict
//       # or a whole EMMA state dict (release names): - {path: emma.safetensors}
// Outputs: va [B, 2], expression_logits [B, 8], au_logits [B, 12], dan_logits [B, 8] (with the DAN).
#pragma once

#include "core/config.h"
#include "models/backbones/vit.h"
#include "models/face/dan.h"
#include "models/model.h"

#include <string>

namespace facet::models::face {

struct EmmaOptions {
  ViTOptions vit = default_vit();
  std::string input = "image";
  int64_t head_hidden = 512, num_expressions = 8, num_aus = 12, va_hidden = 256;
  bool dan = true, freeze_dan = true;
  int64_t dan_classes = 8, dan_heads = 4;

  // ViT-B/16 at 224 with EMMA's stochastic depth 0.1.
  static ViTOptions default_vit();
  static EmmaOptions from(const Config& c);
};

class Emma : public Model, public LayerDepths {
 public:
  explicit Emma(EmmaOptions options);
  Outputs forward(const data::Batch& batch) override;

  // The ViT's ids (0 embeddings, 1..depth blocks, depth + 1 final norm); its head, the VA head and
  // the DAN share the top id, so they train at the full learning rate under optim.layer_decay.
  int64_t num_layer_ids() const override { return vit_->num_layer_ids(); }
  int64_t layer_id(const std::string& parameter_name) const override;

  const EmmaOptions& options() const { return options_; }
  ViT& vit() { return vit_; }
  Dan& dan() { return cnn_; }  // null without the DAN branch

 private:
  EmmaOptions options_;
  ViT vit_{nullptr};
  torch::nn::Sequential head_{nullptr}, va_head_{nullptr};
  Dan cnn_{nullptr};
};

}  // namespace facet::models::face
