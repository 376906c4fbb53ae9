// Vision-language speed in Facet, compared by bench/vlm.py with transformers' LlavaForConditionalGeneration
// (+ PEFT) on the same small LLaVA (CLIP: 224 px, patch 32 -> 49 tokens, width 384, 6 layers, frozen;
// projector mlp2x_gelu; LLaMA: vocab 32000, width 512, 4 layers, MLP 1376), threads and shapes:
//   train: forward + backward + AdamW on LoRA (r 8 on the decoder's q_proj, v_proj) and the projector,
//          a batch of images with `--text` text tokens each (one placeholder -> 49 image tokens);
//   generate: greedy decoding of `--new` tokens for one image + prompt, new tokens per second.
// Prints one JSON line per part.
//   vlm_bench [--batch 2] [--text 64] [--steps 5] [--warmup 2] [--prompt 16] [--new 32] [--threads N]
#include "bench/common.h"
#include "core/config.h"
#include "models/adapters/adapter.h"
#include "models/vlm/llava.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

using namespace facet;
using namespace facet::models::vlm;

int main(int argc, char** argv) {
  int64_t batch = 2, text = 64, steps = 5, warmup = 2, prompt = 16, fresh = 32, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--batch") batch = value;
    else if (flag == "--text") text = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--prompt") prompt = value;
    else if (flag == "--new") fresh = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  LlavaOptions o;
  o.vision = ClipVisionOptions::vit_b32();
  o.vision.hidden_size = 384;
  o.vision.intermediate_size = 1536;
  o.vision.num_hidden_layers = 6;
  o.vision.num_attention_heads = 6;
  o.vision.feature_layer = -2;
  o.text.vocab_size = 32000;
  o.text.hidden_size = 512;
  o.text.intermediate_size = 1376;
  o.text.num_hidden_layers = 4;
  o.text.num_attention_heads = 8;
  o.text.max_position_embeddings = 2048;
  o.text.rms_norm_eps = 1e-5;
  o.image_token_id = 31999;
  auto model = std::make_shared<LlavaModel>(o);
  models::apply_adapters(*model, Config::parse("a: [{name: lora, targets: [model.layers.*.self_attn.q_proj, model.layers.*.self_attn.v_proj], "
                                               "rank: 8, alpha: 16}]").at("a"));
  const auto trainable = bench::train_only(*model, [](const std::string& name) {
    return name.find("lora_") != std::string::npos || name.starts_with("multi_modal_projector.");
  });
  // torch.optim.AdamW(lr=1e-4)'s defaults (weight decay 0.01), Facet's fused kernel.
  auto optimizer = bench::optimizer("{name: adamw, lr: 1.0e-4, weight_decay: 0.01}", trainable);
  data::Batch b;
  auto ids = torch::randint(3, 31000, {batch, text}, torch::kLong);
  ids.select(1, 1).fill_(o.image_token_id);
  b.fields["input_ids"] = ids;
  b.fields["labels"] = ids.masked_fill(ids == o.image_token_id, -100);
  b.fields["attention_mask"] = torch::ones_like(ids);
  b.fields["image"] = torch::randn({batch, 3, 224, 224});
  b.indices = torch::arange(batch);
  model->train();
  auto step = [&] {
    optimizer->zero_grad();
    Outputs out;
    auto r = model->forward_losses(b, out);
    r.total.backward();
    optimizer->step();
  };
  const double ms = bench::ms_per_call(step, warmup, steps);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  fmt::print("{{\"impl\": \"facet\", \"part\": \"train\", \"params\": {}, \"batch\": {}, \"text\": {}, \"threads\": {}, \"ms_per_step\": {:.2f}}}\n",
             params, batch, text, torch::get_num_threads(), ms);

  model->eval();
  models::merge_adapters(*model);
  std::vector<int64_t> p(prompt);
  for (int64_t i = 0; i < prompt; ++i) p[i] = 100 + i;
  p[1] = o.image_token_id;
  data::Batch image;
  image.fields["image"] = torch::randn({1, 3, 224, 224});
  models::llm::GenerationOptions g;
  g.max_new_tokens = 4;
  model->generate(image, {p}, g);  // warm-up
  g.max_new_tokens = fresh;  // no stop token: every run generates the same count
  const auto start = std::chrono::steady_clock::now();
  const auto out = model->generate(image, {p}, g);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{{\"impl\": \"facet\", \"part\": \"generate\", \"prompt\": {}, \"new_tokens\": {}, \"threads\": {}, \"tokens_per_s\": {:.2f}}}\n",
             prompt, out[0].tokens.size(), torch::get_num_threads(), static_cast<double>(out[0].tokens.size()) / s);
}
