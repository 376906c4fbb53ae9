#include "models/generative/stable_diffusion.h"

#include "core/error.h"
#include "core/log.h"

#include <ATen/CPUGeneratorImpl.h>

namespace facet::models::generative {

namespace F = torch::nn::functional;

namespace {

// Stable Diffusion's training schedule (scheduler_config.json): scaled_linear 0.00085 .. 0.012, ε.
NoiseScheduleOptions sd_schedule() {
  NoiseScheduleOptions o;
  o.num_timesteps = 1000;
  o.beta_schedule = "scaled_linear";
  o.beta_start = 0.00085;
  o.beta_end = 0.012;
  o.prediction = "epsilon";
  return o;
}

}  // namespace

SamplingOptions SamplingOptions::from(const Config& c) {
  SamplingOptions o;
  o.steps = c.get_in_range<int64_t>("steps", o.steps, Range::at_least(1));
  o.guidance_scale = c.get_in_range<double>("guidance_scale", o.guidance_scale, Range::at_least(0));
  o.eta = c.get_in_range<double>("eta", o.eta, Range::closed(0, 1));  // above 1 the DDIM variance exceeds the step's
  o.size = c.get_in_range<int64_t>("size", o.size, Range::at_least(0));
  o.negative_prompt = c.get<std::string>("negative_prompt", o.negative_prompt);
  o.seed = c.get<uint64_t>("seed", o.seed);
  return o;
}

StableDiffusionOptions StableDiffusionOptions::from(const Config& c) {
  StableDiffusionOptions o;
  if (c.has("text_encoder")) o.text_encoder = vlm::ClipTextOptions::from(c.at("text_encoder"));
  if (c.has("vae")) o.vae = AutoencoderKLOptions::from(c.at("vae"));
  if (c.has("unet")) o.unet = UNet2DConditionOptions::from(c.at("unet"));
  o.schedule = c.has("schedule") ? NoiseScheduleOptions::from(c.at("schedule"), sd_schedule()) : sd_schedule();
  if (c.has("sampling")) o.sampling = SamplingOptions::from(c.at("sampling"));
  o.tokenizer = c.get<std::string>("tokenizer", "");
  o.new_tokens = c.get<std::vector<std::string>>("new_tokens", {});
  o.initializer_tokens = c.get<std::vector<std::string>>("initializer_tokens", {});
  if (o.initializer_tokens.size() != o.new_tokens.size())
    fail("{}: {}: {} initializer tokens for {} new tokens (one existing token per new one, whose embedding it starts from)",
         c.where("initializer_tokens"), c.full_key("initializer_tokens"), o.initializer_tokens.size(), o.new_tokens.size());
  if (!o.new_tokens.empty() && o.tokenizer.empty())
    fail("{}: {}: new tokens need the tokenizer (model.tokenizer: the folder with vocab.json and merges.txt)", c.where("new_tokens"),
         c.full_key("new_tokens"));
  o.train_text_encoder = c.get<bool>("train_text_encoder", o.train_text_encoder);
  o.image_field = c.get<std::string>("image_field", o.image_field);
  o.prompt_field = c.get<std::string>("prompt_field", o.prompt_field);
  o.mask_field = c.get<std::string>("mask_field", o.mask_field);
  o.conditioning_layer = c.get<int64_t>("conditioning_layer", o.conditioning_layer);
  const int64_t layers = o.text_encoder.num_hidden_layers;
  if (o.conditioning_layer < -(layers + 1) || o.conditioning_layer > layers)
    fail("{}: {}: the text tower has hidden states -{}..{}, got {}", c.where("conditioning_layer"), c.full_key("conditioning_layer"),
         layers + 1, layers, o.conditioning_layer);
  o.sample_posterior = c.get<bool>("sample_posterior", o.sample_posterior);
  o.freeze_start_token_kv = c.get<bool>("freeze_start_token_kv", o.freeze_start_token_kv);
  if (o.unet.cross_attention_dim != o.text_encoder.hidden_size)
    fail("{}: model.unet.cross_attention_dim {} must equal model.text_encoder.hidden_size {}", c.where(), o.unet.cross_attention_dim,
         o.text_encoder.hidden_size);
  if (o.unet.in_channels != o.vae.latent_channels || o.unet.out_channels != o.vae.latent_channels)
    fail("{}: the UNet's in/out channels ({}, {}) must equal the VAE's latent_channels {}", c.where(), o.unet.in_channels,
         o.unet.out_channels, o.vae.latent_channels);
  return o;
}

StableDiffusion::StableDiffusion(StableDiffusionOptions options) : options_(std::move(options)), schedule_(options_.schedule) {
  text_encoder = register_module("text_encoder", vlm::ClipTextModel(options_.text_encoder));
  vae = register_module("vae", AutoencoderKL(options_.vae));
  unet = register_module("unet", UNet2DCondition(options_.unet));
  if (!options_.new_tokens.empty()) {
    const int64_t n = static_cast<int64_t>(options_.new_tokens.size());
    // Never deferred (a few rows, and no checkpoint holds them before training): N(0, 0.02) until
    // weights_loaded() copies the initializer tokens' rows in.
    new_token_embeddings = register_parameter(
        "new_token_embeddings", torch::empty({n, options_.text_encoder.hidden_size}, construction_tensor_options()));
    torch::NoGradGuard no_grad;
    new_token_embeddings.normal_(0, 0.02);
  }
  if (options_.freeze_start_token_kv)
    for (const auto& m : unet->named_modules())
      if (m.key().ends_with("attn2")) m.value()->as<Attention>()->freeze_start_token_kv = true;
  // The VAE only ever encodes and decodes; the text tower trains only when asked.
  for (auto& p : vae->parameters()) p.set_requires_grad(false);
  if (!options_.train_text_encoder)
    for (auto& p : text_encoder->parameters()) p.set_requires_grad(false);
}

const data::text::ClipTokenizer& StableDiffusion::tokenizer() const {
  std::call_once(tokenizer_once_, [&] {
    if (options_.tokenizer.empty()) fail("stable_diffusion: model.tokenizer is not set (the folder with vocab.json and merges.txt)");
    tokenizer_ = data::text::ClipTokenizer::load(options_.tokenizer);
    if (tokenizer_.vocab_size() != first_new_id())
      fail("model.tokenizer: {} has {} tokens, the text tower's table {} rows (model.text_encoder.vocab_size)", options_.tokenizer,
           tokenizer_.vocab_size(), first_new_id());
    for (size_t i = 0; i < options_.new_tokens.size(); ++i)
      if (tokenizer_.add_token(options_.new_tokens[i]) != first_new_id() + static_cast<int64_t>(i))
        fail("model.new_tokens: \"{}\" is listed twice", options_.new_tokens[i]);
    for (const auto& token : placeholder_tokens_) tokenizer_.add_token(token);
  });
  return tokenizer_;
}

void StableDiffusion::weights_loaded(const std::set<std::string>& loaded) {
  if (options_.new_tokens.empty()) return;
  if (loaded.contains("new_token_embeddings")) {  // trained words from an earlier run's checkpoint
    log::info("new tokens: their embeddings were loaded by train.init_weights; the initializer tokens are not used");
    return;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor& table = text_encoder->text_model->embeddings->token_embedding->weight;
  for (size_t i = 0; i < options_.new_tokens.size(); ++i) {
    const std::string& word = options_.initializer_tokens[i];
    const auto ids = tokenizer().encode(word);  // BOS, the word's tokens, EOS
    if (ids.size() != 3)
      fail("model.initializer_tokens[{}]: \"{}\" is {} tokens; it must be one (Custom Diffusion's ktn, pll, ucd are)", i, word,
           ids.size() - 2);
    if (ids[1] >= first_new_id()) fail("model.initializer_tokens[{}]: \"{}\" is itself a new token", i, word);
    new_token_embeddings[static_cast<int64_t>(i)].copy_(table[ids[1]]);
    log::info("new token {} (id {}) starts as \"{}\" (id {})", options_.new_tokens[i], first_new_id() + static_cast<int64_t>(i), word, ids[1]);
  }
}

torch::Tensor StableDiffusion::tokenize(const std::vector<std::string>& prompts, const torch::Device& device) const {
  const data::text::ClipTokenizer& words = tokenizer();
  const int64_t length = words.model_max_length;
  if (length > options_.text_encoder.max_position_embeddings)
    fail("stable_diffusion: the tokenizer pads to {} tokens, the text tower has {} positions", length,
         options_.text_encoder.max_position_embeddings);
  std::vector<int64_t> flat;
  flat.reserve(prompts.size() * static_cast<size_t>(length));
  for (const auto& p : prompts) {
    const auto ids = words.encode_padded(p);
    flat.insert(flat.end(), ids.begin(), ids.end());
  }
  return torch::tensor(flat, torch::kLong).view({static_cast<int64_t>(prompts.size()), length}).to(device);
}

torch::Tensor StableDiffusion::word_embeddings(const torch::Tensor& ids, const data::Batch*, TensorDict*) {
  if (!new_token_embeddings.defined()) return text_encoder->word_embeddings(ids);
  const torch::Tensor is_new = ids >= first_new_id();
  const torch::Tensor base = text_encoder->word_embeddings(ids.masked_fill(is_new, 0));
  const int64_t n = new_token_embeddings.size(0);
  const torch::Tensor learned = F::embedding(((ids - first_new_id()).clamp(0, n - 1)), new_token_embeddings.to(base.dtype()));
  return torch::where(is_new.unsqueeze(-1), learned, base);
}

torch::Tensor StableDiffusion::encode_prompts(const std::vector<std::string>& prompts, const torch::Device& device,
                                              const data::Batch* batch, TensorDict* regularizers) {
  const torch::Tensor words = word_embeddings(tokenize(prompts, device), batch, regularizers);
  return text_encoder->encode_words(words, options_.conditioning_layer);
}

torch::Tensor StableDiffusion::encode_images(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const auto& o = options_.vae;
  if (images.dim() != 4 || images.size(1) != o.in_channels)
    fail("stable_diffusion: expected images [B, {}, H, W] in [-1, 1], got {}", o.in_channels, images.sizes());
  if (images.size(2) % o.downscale() != 0 || images.size(3) % o.downscale() != 0)
    fail("stable_diffusion: image size {}x{} is not a multiple of the VAE's {}", images.size(2), images.size(3), o.downscale());
  // 0..255 pixels taken for [-1, 1] would train on garbage latents without a complaint.
  const double largest = images.abs().max().item<double>();
  if (!images.is_floating_point() || largest > 1.5)
    fail("stable_diffusion: images must be in [-1, 1] (data.transforms: normalize with mean and std 127.5), got {} values up to {}",
         c10::toString(images.scalar_type()), largest);
  const auto& w = vae->encoder->conv_in->weight;
  const LatentDistribution posterior = vae->encode(images.to(w.dtype()));
  return (options_.sample_posterior ? posterior.sample() : posterior.mean) * o.scaling_factor;
}

const std::vector<std::string>& StableDiffusion::prompts_of(const data::Batch& batch) const {
  const auto it = batch.text.find(options_.prompt_field);
  if (it == batch.text.end())
    fail("stable_diffusion: the batch has no text field \"{}\" (model.prompt_field); the dataset must give each image its prompt",
         options_.prompt_field);
  return it->second;
}

DenoiserInputs StableDiffusion::encode(const data::Batch& batch) {
  if (!batch.fields.contains(options_.image_field))
    fail("stable_diffusion: the batch has no field \"{}\" (model.image_field)", options_.image_field);
  DenoiserInputs in;
  in.x0 = encode_images(batch.fields.at(options_.image_field));
  in.condition["text"] = encode_prompts(prompts_of(batch), in.x0.device(), &batch, &in.regularizers);
  if (!options_.mask_field.empty()) {
    if (!batch.fields.contains(options_.mask_field))
      fail("stable_diffusion: the batch has no field \"{}\" (model.mask_field)", options_.mask_field);
    torch::Tensor m = batch.fields.at(options_.mask_field).to(torch::kFloat);
    if (m.dim() == 3) m = m.unsqueeze(1);
    if (m.dim() != 4 || m.size(1) != 1) fail("stable_diffusion: mask \"{}\" must be [B, 1, H, W] or [B, H, W], got {}", options_.mask_field, m.sizes());
    // The fraction of each latent cell's pixels inside the mask.
    in.loss_mask = F::adaptive_avg_pool2d(m, F::AdaptiveAvgPool2dFuncOptions({in.x0.size(2), in.x0.size(3)}));
  }
  return in;
}

torch::Tensor StableDiffusion::denoise(const torch::Tensor& noisy, const torch::Tensor& timesteps, const DenoiserInputs& inputs) {
  return unet(noisy.to(unet->conv_in->weight.scalar_type()), timesteps, inputs.condition.at("text"));
}

torch::Tensor StableDiffusion::generate(const std::vector<std::string>& prompts, const SamplingOptions& sampling,
                                        const std::vector<uint64_t>& seeds, const data::Batch* batch) {
  torch::NoGradGuard no_grad;
  const int64_t b = static_cast<int64_t>(prompts.size());
  if (static_cast<int64_t>(seeds.size()) != b) fail("stable_diffusion: {} seeds for {} prompts", seeds.size(), b);
  const auto& w = unet->conv_in->weight;
  const int64_t f = options_.vae.downscale();
  const int64_t side = sampling.size > 0 ? sampling.size : options_.unet.sample_size * f;
  if (side % f != 0) fail("stable_diffusion: sampling size {} is not a multiple of the VAE's {}", side, f);
  const std::vector<int64_t> shape{1, options_.vae.latent_channels, side / f, side / f};

  // Noise per sample from its own seed, drawn on the CPU: the same picture on any device and batch.
  std::vector<at::Generator> generators;
  std::vector<torch::Tensor> initial;
  for (const uint64_t seed : seeds) {
    generators.push_back(at::make_generator<at::CPUGeneratorImpl>(seed));
    initial.push_back(torch::randn(shape, generators.back(), torch::kFloat));
  }
  torch::Tensor latents = torch::cat(initial).to(w.device(), w.scalar_type());

  const bool guided = sampling.guidance_scale > 1.0;  // as diffusers: at or below 1 the conditional prediction alone
  torch::Tensor context = encode_prompts(prompts, w.device(), batch);
  if (guided) context = torch::cat({encode_prompts(std::vector<std::string>(prompts.size(), sampling.negative_prompt), w.device()), context});

  const DdimSampler sampler(schedule_, DdimOptions{.steps = sampling.steps, .eta = sampling.eta});
  for (const int64_t t : sampler.timesteps()) {
    const torch::Tensor input = guided ? torch::cat({latents, latents}) : latents;
    torch::Tensor eps = unet(input, torch::full({input.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(w.device())), context);
    if (guided) {
      const auto parts = eps.chunk(2);
      eps = parts[0] + sampling.guidance_scale * (parts[1] - parts[0]);
    }
    torch::Tensor noise;
    if (sampling.eta > 0) {
      std::vector<torch::Tensor> draws;
      for (auto& g : generators) draws.push_back(torch::randn(shape, g, torch::kFloat));
      noise = torch::cat(draws).to(w.device(), w.scalar_type());
    }
    latents = sampler.step(eps.to(torch::kFloat), t, latents.to(torch::kFloat), noise).prev_sample.to(w.scalar_type());
  }
  const auto& v = vae->post_quant_conv->weight;
  const torch::Tensor images = vae->decode((latents / options_.vae.scaling_factor).to(v.scalar_type()));
  return (images.to(torch::kFloat) / 2 + 0.5).clamp(0, 1);
}

Outputs StableDiffusion::forward(const data::Batch& batch) {
  const auto& prompts = prompts_of(batch);
  std::vector<uint64_t> seeds;
  const torch::Tensor indices = batch.indices.defined() ? batch.indices.to(torch::kCPU) : torch::arange(static_cast<int64_t>(prompts.size()));
  for (int64_t i = 0; i < indices.size(0); ++i) seeds.push_back(options_.sampling.seed + static_cast<uint64_t>(indices[i].item<int64_t>()));
  Outputs out;
  out["samples"] = generate(prompts, options_.sampling, seeds, &batch);
  out.text["prompt"] = prompts;
  return out;
}

FACET_REGISTER(model_registry(), "stable_diffusion",
               "Stable Diffusion 1.x (CLIP text tower, VAE, UNet in diffusers' layout) for step diffusion: new words with learned "
               "embeddings (new_tokens, initializer_tokens), masked loss (mask_field), DDIM samples with guidance (sampling)",
               [](const Config& c) -> std::shared_ptr<Model> { return std::make_shared<StableDiffusion>(c); });

}  // namespace facet::models::generative
