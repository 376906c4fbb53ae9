// Language-model speed in Facet, compared by bench/llm.py with transformers (+ PEFT) on the same
// ~110M-parameter LLaMA configuration (vocab 32000, hidden 768, 12 layers, 12 heads, MLP 2048,
// tied embeddings), threads and shapes:
//   train: forward + backward + AdamW on LoRA (r 8, q_proj + v_proj) parameters, base frozen;
//   generate: greedy decoding with the KV cache, new tokens per second.
// Prints one JSON line per part.
//   llm_bench [--batch 4] [--seq 128] [--steps 5] [--warmup 2] [--prompt 16] [--new 32] [--threads N]
#include "bench/common.h"
#include "core/config.h"
#include "models/adapters/adapter.h"
#include "models/llm/generate.h"
#include "models/llm/llama.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

using namespace facet;
using namespace facet::models::llm;

int main(int argc, char** argv) {
  int64_t batch = 4, seq = 128, steps = 5, warmup = 2, prompt = 16, fresh = 32, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::stoll(argv[i + 1]);
    if (flag == "--batch") batch = value;
    else if (flag == "--seq") seq = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--warmup") warmup = value;
    else if (flag == "--prompt") prompt = value;
    else if (flag == "--new") fresh = value;
    else if (flag == "--threads") threads = value;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 768;
  c.intermediate_size = 2048;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 12;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  auto model = std::make_shared<LlamaForCausalLM>(c);
  models::apply_adapters(*model, Config::parse("adapters: [{name: lora, targets: [q_proj, v_proj], rank: 8, alpha: 16}]").at("adapters"));
  const auto trainable = bench::train_only(*model, [](const std::string& name) { return name.find("lora_") != std::string::npos; });
  // torch.optim.AdamW(lr=1e-4)'s defaults (weight decay 0.01), Facet's fused kernel.
  auto optimizer = bench::optimizer("{name: adamw, lr: 1.0e-4, weight_decay: 0.01}", trainable);
  data::Batch b;
  b.fields["input_ids"] = torch::randint(0, c.vocab_size, {batch, seq}, torch::kLong);
  b.fields["labels"] = b.fields["input_ids"];
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
  fmt::print("{{\"impl\": \"facet\", \"part\": \"train\", \"params\": {}, \"batch\": {}, \"seq\": {}, \"threads\": {}, \"ms_per_step\": {:.2f}}}\n",
             params, batch, seq, torch::get_num_threads(), ms);

  model->eval();
  models::merge_adapters(*model);
  GenerationOptions o;
  o.max_new_tokens = fresh;  // no stop token: every run generates the same count
  std::vector<int64_t> ids(prompt);
  for (int64_t i = 0; i < prompt; ++i) ids[i] = 100 + i;
  GenerationOptions warm_up;
  warm_up.max_new_tokens = 4;
  generate(*model, {ids}, warm_up);
  const auto start = std::chrono::steady_clock::now();
  const auto out = generate(*model, {ids}, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{{\"impl\": \"facet\", \"part\": \"generate\", \"prompt\": {}, \"new_tokens\": {}, \"threads\": {}, \"tokens_per_s\": {:.2f}}}\n",
             prompt, out[0].tokens.size(), torch::get_num_threads(), static_cast<double>(out[0].tokens.size()) / s);
}
