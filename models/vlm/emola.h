// EmoLA (Li et al., ECCV 2024, "Facial Affective Behavior Analysis with Instruction Tuning"): LLaVA-1.5-7B
// plus a facial prior expert — the 212-d landmark vector of InsightFace's 2d106det (106 points x 2,
// FABA-Instruct's landmarks/*.npy) projected 212 -> 4096 -> GELU -> 4096 and appended as ONE token after
// the 576 image tokens (577 visual tokens per <image>, all unsupervised).
// Training as released: LoRA r = 128, alpha = 256, dropout 0.05 on q,k,v,o,gate,up,down of every decoder
// layer (model.adapters in experiments/vlm/emola.yaml; the towers and projectors are not wrapped),
// mm_projector and prior projector trained fully, the vision tower frozen; learning rates 1e-4 and,
// for the mm_projector, 2e-5 (optim.groups: [{match: "*multi_modal_projector*", lr_mult: 0.2}]).
// Parameter names: LLaVA's (llava.h) + landmark_projector.linear_{1,2}.* — the released code's own
// name for this module is not used by any public checkpoint we read; this one is our choice.
//
// Registered: the model `emola` (the llava keys + prior_dim: 212). Batch field `landmarks` [B, 212].
#pragma once

#include "models/vlm/llava.h"

namespace facet::models::vlm {

struct EmolaOptions {
  LlavaOptions llava = LlavaOptions::llava15_7b();
  int64_t prior_dim = 212;
  static EmolaOptions from(const Config& c);
  int64_t prior_projector_parameters() const { return MlpProjectorImpl::count(prior_dim, llava.text.hidden_size, llava.text.hidden_size); }
  int64_t num_parameters() const { return llava.num_parameters() + prior_projector_parameters(); }
};

class EmolaModel : public LlavaModel {
 public:
  explicit EmolaModel(const EmolaOptions& options);
  explicit EmolaModel(const Config& c) : EmolaModel(EmolaOptions::from(c)) {}

  // LLaVA's 576 image tokens, then the projected landmark token: [B, 577, H].
  torch::Tensor visual_tokens(const data::Batch& batch) override;
  torch::Tensor prior_token(const torch::Tensor& landmarks);  // [B, 212] -> [B, 1, H]

  MlpProjector landmark_projector{nullptr};

 private:
  int64_t prior_dim_;
};

}  // namespace facet::models::vlm
