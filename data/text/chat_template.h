// Chat templates of the language models Facet's vision-language systems fine-tune, and the
// supervision they train with: labels are the ignore index everywhere except the answers (and the
// end-of-answer token the reference trains: EOS for Llama-2-chat and Vicuna, "\n" for MiniGPT-v2).
//   llama2      Meta's Llama-2-chat: <s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{u1} [/INST] {a1} </s><s>[INST] {u2} [/INST]
//               (llama/generation.py: each pair encoded with BOS and EOS, answers followed by " ")
//   vicuna_v1   FastChat / LLaVA conv_vicuna_v1: {sys} USER: {u1} ASSISTANT: {a1}</s>USER: {u2} ASSISTANT:
//   minigpt_v2  MiniGPT-v2: <s>[INST] {u} [/INST] for the prompt (BOS as a token), the answer + "\n"
//               tokenized on its own (minigpt_base.py)
// An image marker in a user turn ("<image>", or MiniGPT's "<ImageHere>") becomes kImagePlaceholder
// in input_ids, for the vision model to replace with its embeddings (LLaVA's IMAGE_TOKEN_INDEX).
// The token ids equal the slow LlamaTokenizer's tokenization of the rendered text (segments split
// at spaces, where SentencePiece's dummy prefix stands for the space). ../shared/research/infra.md §7.2-7.4.
#pragma once

#include "data/instruct/instruct.h"
#include "data/text/tokenizer.h"

#include <optional>
#include <string>
#include <vector>

namespace facet::data::text {

inline constexpr int64_t kImagePlaceholder = -200;

struct ChatOptions {
  std::string style = "llama2";  // llama2 | vicuna_v1 | minigpt_v2
  // The system message; unset: the style's default (vicuna_v1: FastChat's, others none).
  std::optional<std::string> system;
  std::string image_token = "<image>";
  std::string end_sym = "\n";  // minigpt_v2's end of answer
  int64_t max_length = 0;      // > 0: tokens beyond it are cut (input_ids and labels alike)
};

// FastChat's vicuna_v1.1 system message.
extern const std::string kVicunaSystem;

struct EncodedChat {
  std::vector<int64_t> input_ids, labels;  // same length; labels kIgnoreIndex outside the answers
  bool truncated = false;
};

// A whole conversation (human first, alternating, ending with an answer) for training.
EncodedChat encode_conversation(const Tokenizer& tok, const std::vector<Turn>& turns, const ChatOptions& options);
// The prompt for generating the answer to the last turn (a human turn; earlier pairs as history).
std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::vector<Turn>& turns, const ChatOptions& options);
// The text the reference renders ("<s>", "</s>" written out); for_generation: ends with the
// assistant's cue after the last (human) turn.
std::string render(const std::vector<Turn>& turns, const ChatOptions& options, bool for_generation);

}  // namespace facet::data::text
