// One Custom Diffusion training step on a Stable Diffusion of SD 1.x's structure at reduced width
// (bench/diffusion.py builds the same networks with diffusers + transformers): VAE-encode the
// images (no gradient), the prompts through the CLIP text tower with a learned word, noise, the UNet,
// the masked mean squared error on ε, backward, AdamW on the cross-attention K/V and the word.
// Prints one JSON line.
//   diffusion_bench [--size 128] [--batch 2] [--width 64] [--steps 3] [--warmup 1] [--threads N]
//                   [--tokenizer tests/fixtures/generative/clip_tokenizer]  (run from the repository root)
#include "bench/common.h"
#include "core/config.h"
#include "models/build.h"
#include "models/generative/stable_diffusion.h"

#include <fmt/format.h>

#include <string>

using namespace facet;

int main(int argc, char** argv) {
  int64_t size = 128, batch = 2, width = 64, steps = 3, warmup = 1, threads = 0;
  std::string tokenizer = "tests/fixtures/generative/clip_tokenizer";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--tokenizer") {
      tokenizer = argv[i + 1];
      continue;
    }
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--size") size = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--width") width = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  // SD 1.x's layout: 4 UNet blocks (3 attending), 2 resnets each, 8 heads, a 4-block VAE, a 12-layer
  // tower; widths scaled by `width` / 320 (the UNet) so a CPU step takes seconds, not minutes.
  const int64_t w = width;
  const std::string yaml = fmt::format(
      "name: stable_diffusion\ntokenizer: {}\n"
      "text_encoder: {{vocab_size: 3514, hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 12, num_attention_heads: 8}}\n"
      "vae: {{block_out_channels: [32, 64, 128, 128]}}\n"
      "unet: {{sample_size: {}, block_out_channels: [{}, {}, {}, {}], cross_attention_dim: 256}}\n"
      "new_tokens: ['<new1>']\ninitializer_tokens: [cat]\nmask_field: mask\nfreeze_start_token_kv: true\n",
      tokenizer, size / 8, w, 2 * w,
      4 * w, 4 * w);
  auto model = std::dynamic_pointer_cast<models::generative::StableDiffusion>(models::build_model(Config::parse(yaml, "bench")));
  model->weights_loaded({});
  model->train();
  const auto params = bench::train_only(*model, [](const std::string& n) {
    return n == "new_token_embeddings" || n.find("attn2.to_k") != std::string::npos || n.find("attn2.to_v") != std::string::npos;
  });
  auto optimizer = bench::optimizer("{name: adamw, lr: 1.0e-5, weight_decay: 0.01}", params);
  data::Batch b;
  b.fields["image"] = torch::rand({batch, 3, size, size}) * 2 - 1;
  b.fields["mask"] = torch::ones({batch, 1, size, size});
  b.text["prompt"] = std::vector<std::string>(static_cast<size_t>(batch), "photo of a <new1> cat");
  b.indices = torch::arange(batch);
  const auto& schedule = model->schedule();
  auto step = [&] {
    optimizer->zero_grad();
    const auto in = model->encode(b);
    const auto t = torch::randint(1000, {batch}, torch::kLong);
    const auto noise = torch::randn_like(in.x0);
    const auto err = (model->denoise(schedule.add_noise(in.x0, noise, t), t, in) - noise).pow(2) * in.loss_mask;
    (err.reshape({batch, -1}).sum(1) / in.loss_mask.expand_as(err).reshape({batch, -1}).sum(1)).mean().backward();
    optimizer->step();
  };
  const double ms = bench::ms_per_call(step, warmup, steps);
  fmt::print("{{\"impl\": \"facet\", \"model\": \"custom_diffusion_w{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, "
             "\"ms_per_step\": {:.3f}}}\n",
             width, batch, size, torch::get_num_threads(), ms);
}
