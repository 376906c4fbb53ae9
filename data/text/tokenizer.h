// SentencePiece tokenizer for Llama-2 / Vicuna / LLaVA `tokenizer.model` files (Debian's
// libsentencepiece), matching transformers' slow LlamaTokenizer (use_fast=False, legacy=True as
// Llama-2 ships it): special-token strings written in the text ("<s>", "</s>", "<unk>") are split
// out and become their ids, every other segment is encoded by SentencePiece on its own (so the
// segment after a special token gets the dummy-prefix space, the "legacy" behaviour), BOS in front
// by default. Meta's reference (llama/tokenizer.py) is encode_plain with BOS/EOS added by hand.
// ../shared/research/infra.md §7.1, §8.21.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace facet::data::text {

class Tokenizer {
 public:
  // `path`: a tokenizer.model, or a directory holding one (and optionally tokenizer_config.json,
  // whose add_bos_token / add_eos_token / pad_token are read; legacy: false is refused).
  static Tokenizer load(const std::filesystem::path& path);

  // The slow LlamaTokenizer's `tokenizer(text).input_ids` (with the config's BOS/EOS choice).
  std::vector<int64_t> encode(std::string_view text) const { return encode(text, add_bos, add_eos); }
  std::vector<int64_t> encode(std::string_view text, bool bos, bool eos) const;
  // SentencePiece alone: no special-token splitting, no BOS/EOS ("<s>" in the text stays text).
  std::vector<int64_t> encode_plain(std::string_view text) const;
  // Text of `ids`; control tokens (BOS, EOS, pad) left out when skip_special.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;

  int64_t vocab_size() const;
  std::string piece(int64_t id) const;
  int64_t piece_to_id(std::string_view piece) const;  // unk_id for an unknown piece
  bool is_control(int64_t id) const;

  int64_t bos_id = 1, eos_id = 2, unk_id = 0;
  // Padding: none of the Llama-2 files define one. "unk" (LLaVA / Vicuna training: pad = unk, id 0),
  // "eos" (MiniGPT-v2 / Llama-2 fine-tuning recipes), "bos", a number (a token id), or any other
  // string as a token (LiteGPT's "$$"): its piece's id, the unk id when the vocabulary lacks it, as
  // transformers' `tokenizer.pad_token = "$$"` resolves it. The keywords win over pieces so named.
  int64_t pad_id = 0;
  void set_pad(std::string_view choice);
  bool add_bos = true, add_eos = false;

 private:
  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<std::pair<std::string, int64_t>> specials_;  // longest first
};

}  // namespace facet::data::text
