// LiteGPT (Le-Duc et al. 2024, arXiv 2407.12064; github leduckhai/LiteGPT @1828e4c, built on MiniGPT-v2):
// chest X-ray localisation + classification as text. Two frozen image towers on the same 224 x 224
// image — BiomedCLIP's timm ViT-B/16 (forward_features, CLS dropped: 196 x 768) and PubMedCLIP's CLIP
// ViT-B/32 (last_hidden_state without post-layernorm, CLS dropped: 49 x 768) — concatenated along the
// tokens (245 x 768), a frozen LayerNorm without parameters (gamma 1, beta 0, eps 1e-5, fp32), then
// the exact row-major fold by 5: every 5 consecutive tokens concatenated channel-wise (49 x 3840; group
// 39 mixes the last BiomedCLIP token with the first four PubMedCLIP tokens, as the release does), an
// MLP projector 3840 -> 5632 -> GELU -> 4096 whose second Linear takes MiniGPT-v2's llama_proj
// (converter `minigpt_v2`), spliced at the placeholder into Llama-2-7B-chat with LoRA r = 64, alpha 16
// on q_proj, v_proj (model.adapters in experiments/vlm/litegpt.yaml).
// Parameter names: biomedclip.* (timm), pubmedclip.vision_model.* (transformers CLIP),
// projector.linear_{1,2}.*, language_model.* (transformers Llama); the release's own module names
// are not needed by any published file except MiniGPT-v2's, which the converter maps.
//
// Registered: the model `litegpt` (keys biomedclip, pubmedclip, fold, projector_hidden, text,
// image_token_id) and the converter `minigpt_v2` (llama_proj -> projector.linear_2, the LLM's LoRA
// tensors llama_model.base_model.model.X.lora_A.default.weight -> language_model.X.lora_A.weight).
#pragma once

#include "core/config.h"
#include "models/backbones/vit.h"
#include "models/vlm/clip_vision.h"
#include "models/vlm/vlm.h"

namespace facet::models::vlm {

struct LiteGptOptions {
  ViTOptions biomedclip = biomedclip_vit_options();
  ClipVisionOptions pubmedclip = ClipVisionOptions::vit_b32();  // feature_layer -1, CLS dropped
  int64_t fold = 5;
  int64_t projector_hidden = 5632;  // MiniGPT-v2's EVA width x 4 (llama_proj's input)
  llm::LlamaConfig text;            // Llama-2-7B-chat's shape (max positions 4096)
  int64_t image_token_id = -200;
  int64_t loss_chunk_tokens = 1024;
  bool gradient_checkpointing = false;

  static LiteGptOptions paper();
  static LiteGptOptions from(const Config& c);
  int64_t visual_tokens() const;  // after the fold (49)
  int64_t fused_dim() const { return biomedclip.embed_dim * fold; }  // 3840
  int64_t projector_parameters() const { return MlpProjectorImpl::count(fused_dim(), projector_hidden, text.hidden_size); }
  void validate(const std::string& where = "litegpt") const;
};

class LiteGptModel : public VisionLanguageModel {
 public:
  explicit LiteGptModel(const LiteGptOptions& options);
  explicit LiteGptModel(const Config& c) : LiteGptModel(LiteGptOptions::from(c)) {}

  // Concatenated tower tokens, normalised and folded: [B, 49, 3840] (before the projector).
  torch::Tensor fused_tokens(const torch::Tensor& images);
  torch::Tensor visual_tokens(const data::Batch& batch) override;
  // The grounding answers' boxes over the radiographs (train/visualizers.cpp).
  std::string default_visualizer() const override { return "litegpt_boxes"; }

  const LiteGptOptions& options() const { return options_; }
  ViT biomedclip{nullptr};
  ClipVision pubmedclip{nullptr};
  MlpProjector projector{nullptr};

 private:
  LiteGptOptions options_;
};

}  // namespace facet::models::vlm
