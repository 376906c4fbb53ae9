// Stable Diffusion 1.x (Rombach et al., CVPR 2022) as a trainable Facet model: the CLIP text tower,
// the VAE and the UNet (diffusers' layouts, so the published files load with the diffusers_* / hf_clip_text
// converters), the CLIP tokenizer, and what the customisation methods train on top of them:
//   - new words with learned embeddings (`new_tokens`: textual inversion, Custom Diffusion's
//     modifier token "<new1>"), initialised from an existing token's embedding (`initializer_tokens`);
//     the frozen vocabulary is never touched (no resize-and-restore as the Python scripts do);
//   - the VAE is always frozen and the text tower unless `train_text_encoder`; the UNet and the new
//     words train, narrowed by `optim.params` (parameters no optimiser trains are frozen, and
//     checkpoints reference them instead of re-saving them): Custom Diffusion trains
//     [new_token_embeddings, "unet.*.attn2.to_k.*", "unet.*.attn2.to_v.*"];
//   - a per-pixel loss mask (`mask_field`, Custom Diffusion / DETEX's masked loss) taken to the
//     latent grid.
// Training runs with step `diffusion` (train/steps/diffusion.cpp): encode() gives the scaled VAE
// latents (a posterior sample, without gradients) and the prompts' text states; denoise() is the UNet.
// forward() generates images for the batch's prompts with DDIM and classifier-free guidance, so
// evaluation and `facet predict` show what the model makes of them (visualizer `prompted_samples`).
//
//   model:
//     name: stable_diffusion
//     tokenizer: weights/sd15/tokenizer          # vocab.json + merges.txt
//     text_encoder: {preset: sd15}
//     vae: {preset: sd}
//     unet: {preset: sd15}
//     new_tokens: ["<new1>"]
//     initializer_tokens: [ktn]
//     mask_field: mask                           # optional
//     freeze_start_token_kv: true                # Custom Diffusion's detached start-of-text K/V
//     sampling: {steps: 50, guidance_scale: 6.0, eta: 1.0, size: 512, negative_prompt: ""}
#pragma once

#include "core/config.h"
#include "data/text/clip_tokenizer.h"
#include "models/generative/autoencoder_kl.h"
#include "models/generative/ddim.h"
#include "models/generative/unet2d_condition.h"
#include "models/model.h"
#include "models/vlm/clip_text.h"

#include <torch/torch.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace facet::models::generative {

struct SamplingOptions {
  int64_t steps = 50;
  double guidance_scale = 7.5;  // <= 1: no guidance (one UNet pass per step)
  double eta = 0.0;
  int64_t size = 0;             // image side in pixels; 0: the UNet's sample_size x the VAE's downscale
  std::string negative_prompt;  // the unconditional prompt of classifier-free guidance
  uint64_t seed = 0;            // sample i of a batch starts from noise seeded by seed + its dataset index
  static SamplingOptions from(const Config& c);
};

struct StableDiffusionOptions {
  vlm::ClipTextOptions text_encoder = vlm::ClipTextOptions::sd15();
  AutoencoderKLOptions vae = AutoencoderKLOptions::sd();
  UNet2DConditionOptions unet = UNet2DConditionOptions::sd15();
  NoiseScheduleOptions schedule;  // SD's: scaled_linear 0.00085 .. 0.012 over 1000 steps, epsilon
  SamplingOptions sampling;
  std::string tokenizer;
  std::vector<std::string> new_tokens, initializer_tokens;
  bool train_text_encoder = false;
  std::string image_field = "image", prompt_field = "prompt", mask_field;
  int64_t conditioning_layer = -1;  // the text tower's hidden state the UNet reads (-2: "CLIP skip")
  bool freeze_start_token_kv = false;  // Custom Diffusion: no gradient through the start token's K/V (blocks.h)
  bool sample_posterior = true;     // latents: a sample of the VAE's posterior (SD's training), or its mean

  static StableDiffusionOptions from(const Config& c);
};

class StableDiffusion : public Model, public Denoiser {
 public:
  explicit StableDiffusion(StableDiffusionOptions options);
  explicit StableDiffusion(const Config& c) : StableDiffusion(StableDiffusionOptions::from(c)) {}

  // --- the pieces ---------------------------------------------------------------------------------
  // Token ids [B, 77] of the prompts (new tokens included), on `device`.
  torch::Tensor tokenize(const std::vector<std::string>& prompts, const torch::Device& device) const;
  // Word embeddings [B, L, D]: the frozen table's rows, the learned rows for new tokens. Subclasses
  // (DETEX) put per-image words at their placeholders: `batch` is the batch the prompts belong to
  // (null when generating from prompts alone), and terms they add to the training loss go to
  // `regularizers` (null outside training).
  virtual torch::Tensor word_embeddings(const torch::Tensor& ids, const data::Batch* batch, TensorDict* regularizers);
  // The UNet's text condition [B, L, D] for prompts of `batch` (or none).
  torch::Tensor encode_prompts(const std::vector<std::string>& prompts, const torch::Device& device,
                               const data::Batch* batch = nullptr, TensorDict* regularizers = nullptr);
  // Images [B, 3, H, W] in [-1, 1] -> scaled latents (a posterior sample or mean), without gradients.
  torch::Tensor encode_images(const torch::Tensor& images);
  // DDIM with classifier-free guidance from seeded noise: images [B, 3, H, W] in [0, 1].
  torch::Tensor generate(const std::vector<std::string>& prompts, const SamplingOptions& sampling,
                         const std::vector<uint64_t>& seeds, const data::Batch* batch = nullptr);

  // --- Model and Denoiser -------------------------------------------------------------------------
  DenoiserInputs encode(const data::Batch& batch) override;
  torch::Tensor denoise(const torch::Tensor& noisy, const torch::Tensor& timesteps, const DenoiserInputs& inputs) override;
  // Samples for the batch's prompts (outputs "samples", [B, 3, H, W] in [0, 1]; text "prompt").
  Outputs forward(const data::Batch& batch) override;
  std::string default_visualizer() const override { return "prompted_samples"; }
  // The new words start as their initializer tokens' embeddings, once the pre-trained table is loaded.
  void weights_loaded(const std::set<std::string>& loaded) override;
  const NoiseSchedule* noise_schedule() const override { return &schedule_; }

  const StableDiffusionOptions& options() const { return options_; }
  // Read from model.tokenizer at first use (so `facet summary --meta` needs no files), with the new
  // tokens and the subclass's placeholder tokens added.
  const data::text::ClipTokenizer& tokenizer() const;
  const NoiseSchedule& schedule() const { return schedule_; }

  vlm::ClipTextModel text_encoder{nullptr};
  AutoencoderKL vae{nullptr};
  UNet2DCondition unet{nullptr};
  torch::Tensor new_token_embeddings;  // [new tokens, D]; undefined without any

 protected:
  // The prompts of a batch (text field prompt_field), an error naming the field when absent.
  const std::vector<std::string>& prompts_of(const data::Batch& batch) const;

  StableDiffusionOptions options_;
  // Words added to the tokenizer after the new tokens, without learned rows (DETEX's attribute
  // placeholders): set by a subclass's constructor.
  std::vector<std::string> placeholder_tokens_;
  NoiseSchedule schedule_;

 private:
  mutable std::once_flag tokenizer_once_;
  mutable data::text::ClipTokenizer tokenizer_;
  // Ids from the text tower's vocabulary size on are new words.
  int64_t first_new_id() const { return options_.text_encoder.vocab_size; }
};

}  // namespace facet::models::generative
