#include "models/llm/generate.h"

#include "core/error.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

namespace facet::models::llm {

torch::Tensor repetition_penalty(const torch::Tensor& scores, const torch::Tensor& ids, double penalty) {
  if (penalty == 1.0) return scores;
  auto seen = scores.gather(1, ids);
  seen = torch::where(seen < 0, seen * penalty, seen / penalty);
  return scores.scatter(1, ids, seen);
}

torch::Tensor temperature(const torch::Tensor& scores, double t) {
  if (!(t > 0)) throw Error("generation: temperature must be positive, got " + std::to_string(t));
  return t == 1.0 ? scores : scores / t;
}

torch::Tensor top_k(const torch::Tensor& scores, int64_t k) {
  if (k <= 0) return scores;
  k = std::min(k, scores.size(-1));
  const auto kth = std::get<0>(scores.topk(k, -1)).narrow(-1, k - 1, 1);
  return scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
}

torch::Tensor top_p(const torch::Tensor& scores, double p) {
  if (p >= 1.0) return scores;
  if (!(p > 0)) throw Error("generation: top_p must be in (0, 1], got " + std::to_string(p));
  auto [sorted, order] = scores.sort(-1, /*descending=*/false);
  const auto cumulative = sorted.softmax(-1).cumsum(-1);
  auto remove_sorted = cumulative <= (1 - p);
  remove_sorted.narrow(-1, remove_sorted.size(-1) - 1, 1).fill_(false);  // keep at least the best token
  const auto remove = remove_sorted.scatter(1, order, remove_sorted);
  return scores.masked_fill(remove, -std::numeric_limits<float>::infinity());
}

torch::Tensor process_logits(const torch::Tensor& scores, const torch::Tensor& ids, const GenerationOptions& o) {
  auto s = repetition_penalty(scores, ids, o.repetition_penalty);
  if (o.do_sample) s = top_p(top_k(temperature(s, o.temperature), o.top_k), o.top_p);
  return s;
}

bool append_token(Generation& g, int64_t token, const GenerationOptions& o, const Decoder& decode) {
  g.tokens.push_back(token);
  if (std::find(o.eos_token_ids.begin(), o.eos_token_ids.end(), token) != o.eos_token_ids.end()) {
    g.finish_reason = "eos";
  } else if (!o.stop_strings.empty()) {
    const std::string text = decode(g.tokens);
    for (const auto& s : o.stop_strings)
      if (!s.empty() && text.find(s) != std::string::npos) g.finish_reason = "stop_string";
  }
  return !g.finish_reason.empty();
}

void finish_generation(Generation& g, const GenerationOptions& o, const Decoder& decode) {
  if (g.finish_reason.empty()) g.finish_reason = "length";
  if (!decode) return;
  auto tokens = g.tokens;
  if (g.finish_reason == "eos") tokens.pop_back();
  g.text = decode(tokens);
  if (g.finish_reason == "stop_string") {
    size_t cut = g.text.size();
    for (const auto& s : o.stop_strings)
      if (!s.empty()) cut = std::min(cut, g.text.find(s));
    g.text.resize(cut);
  }
}

std::vector<Generation> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& o, const Decoder& decode, const TokenCallback& on_token) {
  if (prompts.empty()) return {};
  const auto batch = static_cast<int64_t>(prompts.size());
  int64_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw Error("generation: prompt " + std::to_string(i) + " is empty");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  const auto vocab = model.config().vocab_size;
  // Left padding: every prompt ends at the same column, so each step appends one column.
  auto ids = torch::full({batch, longest}, o.pad_token_id, torch::kLong);
  auto mask = torch::zeros({batch, longest}, torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = prompts[b];
    const auto n = static_cast<int64_t>(p.size());
    for (int64_t t : p)
      if (t < 0 || t >= vocab) throw Error("generation: prompt " + std::to_string(b) + " holds token " + std::to_string(t) +
                                           " outside the vocabulary (" + std::to_string(vocab) + ")");
    ids[b].narrow(0, longest - n, n).copy_(torch::tensor(p, torch::kLong));
    mask[b].narrow(0, longest - n, n).fill_(1);
  }
  Prefill prefill;
  prefill.input_ids = ids;
  prefill.attention_mask = mask;
  prefill.seen_ids = ids;
  return generate_from(model, prefill, o, decode, on_token);
}

std::vector<Generation> generate_from(LlamaForCausalLM& model, const Prefill& prefill, const GenerationOptions& o,
                                      const Decoder& decode, const TokenCallback& on_token) {
  if (o.max_new_tokens < 0) throw Error("generation: max_new_tokens must be >= 0");
  if (!o.stop_strings.empty() && !decode) throw Error("generation: stop strings need a decoder (a tokenizer)");
  if (prefill.input_ids.defined() == prefill.inputs_embeds.defined())
    throw Error("generation: a prefill holds input_ids or inputs_embeds (exactly one)");
  const auto& first = prefill.input_ids.defined() ? prefill.input_ids : prefill.inputs_embeds;
  const int64_t batch = first.size(0), length = first.size(1);
  if (batch == 0) return {};
  const auto device = model.head_weight().device();
  auto mask = prefill.attention_mask.defined() ? prefill.attention_mask.to(device, torch::kLong)
                                               : torch::ones({batch, length}, torch::TensorOptions(torch::kLong).device(device));
  if (mask.size(0) != batch || mask.size(1) != length)
    throw Error("generation: the prefill's attention_mask " + c10::str(mask.sizes()) + " differs from its tokens " +
                c10::str(first.sizes()));
  if (!prefill.seen_ids.defined() || prefill.seen_ids.size(0) != batch)
    throw Error("generation: the prefill needs seen_ids [B, P] for its " + std::to_string(batch) + " rows");
  const bool padded = !mask.all().item<bool>();
  auto seen = prefill.seen_ids.to(device, torch::kLong);

  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  KVCache cache(model.config().num_hidden_layers);
  std::vector<Generation> out(batch);
  std::vector<bool> done(batch, false);
  int64_t remaining = batch;
  LlamaInputs in;
  if (prefill.input_ids.defined()) in.input_ids = prefill.input_ids.to(device);
  else in.inputs_embeds = prefill.inputs_embeds.to(device);
  in.attention_mask = padded ? mask : torch::Tensor();
  if (padded) in.position_ids = positions_from_mask(mask, length);
  in.cache = &cache;
  for (int64_t step = 0; step < o.max_new_tokens && remaining > 0; ++step) {
    const auto hidden = model.hidden_states(in);
    const auto scores = process_logits(model.logits(hidden.select(1, hidden.size(1) - 1)), seen, o);
    torch::Tensor next;
    if (o.do_sample) next = torch::multinomial(scores.softmax(-1).cpu(), 1, false, generator).squeeze(1);
    else next = scores.argmax(-1).cpu();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) {
        next[b] = o.pad_token_id;
        continue;
      }
      const int64_t token = next[b].item<int64_t>();
      const bool finished = append_token(out[b], token, o, decode);
      if (on_token) on_token(static_cast<size_t>(b), token);
      if (finished) {
        done[b] = true;
        --remaining;
      }
    }
    next = next.to(device).unsqueeze(1);
    seen = torch::cat({seen, next}, 1);
    mask = torch::cat({mask, torch::ones({batch, 1}, mask.options())}, 1);
    in.input_ids = next;
    in.inputs_embeds = torch::Tensor();
    in.attention_mask = padded ? mask : torch::Tensor();
    if (padded) in.position_ids = positions_from_mask(mask, 1);
  }
  for (auto& g : out) finish_generation(g, o, decode);
  if (was_training) model.train();
  return out;
}

}  // namespace facet::models::llm
