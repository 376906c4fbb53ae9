// LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning"): CLIP ViT-L/14-336
// (penultimate layer, CLS dropped: 576 tokens x 1024) -> `mlp2x_gelu` projector (1024 -> 4096 -> 4096)
// -> the tokens spliced at the <image> placeholder (vlm.h) -> a LLaMA decoder (Vicuna-7B v1.5).
// Parameter names are llava-hf's hub files (transformers' LlavaForConditionalGeneration as saved):
//   vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*, language_model.model.*,
//   language_model.lm_head.weight
// so those files load as they are; the converter `llava` also reads transformers' in-memory names
// (model.vision_tower.*, model.language_model.*, lm_head) and the original LLaVA repository's layout
// (model.mm_projector.0/2, model.vision_tower.vision_tower.vision_model.*, model.layers..., lm_head).
// The vision tower is frozen by default (LLaVA never trains it) and then runs without autograd.
//
// Registered: the model `llava`:
//   model: {name: llava, vision: {preset: vit_l14_336, ...clip_vit keys}, text: {config: vicuna/config.json or keys},
//           image_token_id: -200, projector: mlp2x_gelu | linear, freeze_vision: true}
// image_token_id is the placeholder in input_ids: LLaVA's IMAGE_TOKEN_INDEX (-200) by default, llava-hf's 32000
// when its tokenizer writes <image> as a token.
#pragma once

#include "core/config.h"
#include "models/vlm/clip_vision.h"
#include "models/vlm/vlm.h"

namespace facet::models::vlm {

struct LlavaOptions {
  ClipVisionOptions vision = ClipVisionOptions::vit_l14_336();
  llm::LlamaConfig text;  // LlamaConfig's defaults are Vicuna-7B v1.5's shape
  int64_t image_token_id = -200;
  std::string projector = "mlp2x_gelu";  // mlp2x_gelu | linear
  bool freeze_vision = true;
  int64_t loss_chunk_tokens = 1024;
  bool gradient_checkpointing = false;  // the decoder's layers recomputed in backward (EmoLA trains so)

  static LlavaOptions from(const Config& c);
  // LLaVA-1.5-7B: Vicuna-7B v1.5 (max_position_embeddings 4096, rms_norm_eps 1e-5) + ViT-L/14-336.
  static LlavaOptions llava15_7b();
  int64_t projector_hidden() const { return projector == "linear" ? 0 : text.hidden_size; }
  // Parameters of the whole model, from the configuration alone (nothing built).
  int64_t num_parameters() const;
};

// Parameters of transformers' CLIPVisionModel of these options (post-layernorm included).
int64_t clip_vision_parameters(const ClipVisionOptions& o);

class LlavaModel : public VisionLanguageModel {
 public:
  explicit LlavaModel(const LlavaOptions& options);
  explicit LlavaModel(const Config& c) : LlavaModel(LlavaOptions::from(c)) {}

  // Projected image tokens [B, 576, H] of batch.fields["image"].
  torch::Tensor visual_tokens(const data::Batch& batch) override;
  torch::Tensor image_features(const torch::Tensor& images);  // the same from the pixels

  const LlavaOptions& options() const { return options_; }
  ClipVision vision_tower{nullptr};
  MlpProjector multi_modal_projector{nullptr};

 protected:
  LlavaOptions options_;
};

}  // namespace facet::models::vlm
