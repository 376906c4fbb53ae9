// Text generation with a LLaMA-family decoder: a KV cache (each step runs one token per prompt),
// greedy or sampled decoding with the logits processors applied as transformers applies them
// (repetition penalty, then temperature, top-k, top-p), reproducible from a seed; stop tokens and
// stop strings; batches of prompts of different lengths (left-padded, positions counted over real
// tokens only, as transformers' generate does); streaming of each new token to a callback.
#pragma once

#include "models/llm/llama.h"

#include <functional>
#include <string>
#include <vector>

namespace facet::models::llm {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  bool do_sample = false;        // false: greedy (argmax of the processed logits)
  double temperature = 1.0;      // sampling only; 1 = off
  int64_t top_k = 0;             // sampling only; 0 = off (transformers' default is 50)
  double top_p = 1.0;            // sampling only; 1 = off
  double repetition_penalty = 1.0;  // 1 = off; applied to every token of the prompt and the answer
  uint64_t seed = 0;             // the sampling generator's seed (same seed, same answers)
  std::vector<int64_t> eos_token_ids;    // stop after any of these (kept in the output)
  std::vector<std::string> stop_strings;  // stop once the decoded answer contains one (needs a decoder)
  int64_t pad_token_id = 0;      // fills the left padding and the steps after a row has stopped
};

struct Generation {
  std::vector<int64_t> tokens;  // new tokens, the stop token included
  std::string text;             // decoded answer cut before a stop string (empty without a decoder)
  std::string finish_reason;    // "eos" | "stop_string" | "length"
};

using Decoder = std::function<std::string(const std::vector<int64_t>&)>;
// Called after each step for every row still generating, with the row index and its new token.
using TokenCallback = std::function<void(size_t row, int64_t token)>;

std::vector<Generation> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options, const Decoder& decode = {},
                                 const TokenCallback& on_token = {});

// The prompts as the decoder's first step sees them, for callers that build them themselves (the
// vision-language models splice image embeddings into the token embeddings).
struct Prefill {
  torch::Tensor input_ids;       // [B, L] int64, or
  torch::Tensor inputs_embeds;   // [B, L, H]
  torch::Tensor attention_mask;  // [B, L] 1 = real token; left padding only (every row ends at column L)
  // [B, P] the ids the repetition penalty sees for the prompts (P need not be L: a placeholder that
  // became many embeddings counts once; give it as the pad id).
  torch::Tensor seen_ids;
};
// generate() from a prefill: the first step runs it whole (positions counted over its real tokens
// when it is padded), then one token per row and step with the KV cache, with the same options,
// processors, stop rules and answers as generate().
std::vector<Generation> generate_from(LlamaForCausalLM& model, const Prefill& prefill, const GenerationOptions& options,
                                      const Decoder& decode = {}, const TokenCallback& on_token = {});

// One row's bookkeeping, shared by every decoding loop: `append_token` records the row's next token
// and returns true when it finishes the row (one of eos_token_ids, or a stop string now in the
// decoded answer; finish_reason set); `finish_generation` closes a row after the loop ("length" when
// it never finished; the text decoded without the EOS and cut before the stop string).
bool append_token(Generation& g, int64_t token, const GenerationOptions& options, const Decoder& decode);
void finish_generation(Generation& g, const GenerationOptions& options, const Decoder& decode);

// transformers' logits processors on scores [B, V] (fp32), each returning new scores:
// RepetitionPenaltyLogitsProcessor (ids [B, L]: scores of seen tokens divided by the penalty when
// positive, multiplied when negative), TemperatureLogitsWarper, TopKLogitsWarper and
// TopPLogitsWarper (min_tokens_to_keep 1; removed entries become -inf).
torch::Tensor repetition_penalty(const torch::Tensor& scores, const torch::Tensor& ids, double penalty);
torch::Tensor temperature(const torch::Tensor& scores, double t);
torch::Tensor top_k(const torch::Tensor& scores, int64_t k);
torch::Tensor top_p(const torch::Tensor& scores, double p);
// All of the above in transformers' order, as options enable them (the sampling warpers only when
// options.do_sample).
torch::Tensor process_logits(const torch::Tensor& scores, const torch::Tensor& ids, const GenerationOptions& options);

}  // namespace facet::models::llm
