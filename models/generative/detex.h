// DETEX (Cai et al., AAAI 2024, "Decoupled Textual Embeddings for Customized Image Generation") on
// Stable Diffusion 1.x: each training image is described by one learned, image-shared subject word
// and by image-specific words for the attributes that are not the subject (background, pose), each
// mapped from the image itself by an attribute mapper. The prompt carries the attribute words next
// to their attribute nouns ("photo of a <new1> cat with [B] background in [P] pose"), so the subject
// word need not absorb them; at inference prompts use the subject word alone (or keep an image's
// attribute by giving its image).
//
// What the paper's abstract fixes [V]: one shared subject embedding, one mapper per attribute
// (background, pose), joint training with the attribute words in the prompt, Custom Diffusion as the
// base (its K/V fine-tuning: optim.params), a foreground-masked diffusion loss. What is not public
// (no code, no method section; ../shared/research/infra.md §1) and follows ELITE, the same group's
// image-to-word mapper [I]: the frozen CLIP ViT-L/14 image tower at 224 px (`image_encoder`), its
// last hidden state, and per attribute two MLPs Linear(1024, 1024) LayerNorm LeakyReLU Linear(1024,
// 1024) LayerNorm LeakyReLU Linear(1024, 768) — one on the CLS token, one on each patch token then
// averaged — summed into one word; an L1 penalty `mapper_l1` (ELITE: 0.01) x mean |word|.
//
//   model:
//     name: detex
//     ...stable_diffusion keys (tokenizer, text_encoder, vae, unet, new_tokens: ["<new1>"], ...)
//     attributes: [{token: "[B]", name: background}, {token: "[P]", name: pose}]
//     image_encoder: {image_size: 224, patch_size: 14, hidden_size: 1024, ...}   # CLIP ViT-L/14
//     mapper_hidden: 1024
//     mapper_l1: 0.01
#pragma once

#include "models/generative/stable_diffusion.h"
#include "models/vlm/clip_vision.h"

namespace facet::models::generative {

struct DetexAttribute {
  std::string token;  // the placeholder in prompts, a new token of the tokenizer ("[B]")
  std::string name;   // what it stands for ("background"), for logs and parameter names
};

struct DetexOptions {
  StableDiffusionOptions diffusion;
  std::vector<DetexAttribute> attributes{{"[B]", "background"}, {"[P]", "pose"}};
  vlm::ClipVisionOptions image_encoder;  // CLIP ViT-L/14 at 224, last hidden state, CLS kept
  int64_t mapper_hidden = 1024;
  double mapper_l1 = 0.01;
  // CLIP's pixel statistics (the image tower's input).
  std::vector<double> image_mean{0.48145466, 0.4578275, 0.40821073}, image_std{0.26862954, 0.26130258, 0.27577711};

  static vlm::ClipVisionOptions vit_l14();
  static DetexOptions from(const Config& c);
};

// One attribute's mapper (ELITE's global mapping pair): image tokens [B, 1 + N, C] -> one word [B, D].
class AttributeMapperImpl : public torch::nn::Module {
 public:
  AttributeMapperImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& tokens);
  torch::nn::Sequential global_mlp{nullptr}, patch_mlp{nullptr};  // Linear LN LeakyReLU Linear LN LeakyReLU Linear
};
TORCH_MODULE(AttributeMapper);

class Detex : public StableDiffusion {
 public:
  explicit Detex(DetexOptions options);
  explicit Detex(const Config& c) : Detex(DetexOptions::from(c)) {}

  // The attribute words of the batch's images: [B, attributes, D].
  torch::Tensor attribute_words(const torch::Tensor& images);
  // The subject word (learned) and, at an attribute placeholder, that sample's mapped word.
  torch::Tensor word_embeddings(const torch::Tensor& ids, const data::Batch* batch, TensorDict* regularizers) override;

  const DetexOptions& detex_options() const { return detex_; }

  vlm::ClipVision image_encoder{nullptr};
  torch::nn::ModuleDict mappers{nullptr};  // by attribute name

 private:
  DetexOptions detex_;
};

}  // namespace facet::models::generative
