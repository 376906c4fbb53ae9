// libFuzzer target: any bytes given to the CLIP tokenizer as a prompt (ill-formed UTF-8, entities, escapes, special
// and added tokens) must tokenize — never crash, read out of bounds or trip UBSan — into ids that exist, framed by
// BOS / EOS within model_max_length. An input whose first byte is odd first adds its first line as a token.
#include "core/error.h"
#include "data/text/clip_tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace {

// The fixture beside this source (__FILE__ is absolute: the fuzzer is compiled from its full path).
const facet::data::text::ClipTokenizer& fixture() {
  static const auto t = facet::data::text::ClipTokenizer::load(std::filesystem::path(__FILE__).parent_path().parent_path() /
                                                               "fixtures/generative/clip_tokenizer");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const facet::data::text::ClipTokenizer* tokenizer = &fixture();
  std::optional<facet::data::text::ClipTokenizer> extended;  // a copy only when a token is added
  if (!text.empty() && (text[0] & 1)) {
    auto& t = extended.emplace(fixture());
    tokenizer = &t;
    const size_t newline = text.find('\n');
    const std::string token(text.substr(1, newline == std::string_view::npos ? std::string_view::npos : newline - 1));
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    try {
      if (t.add_token(token) != t.vocab_size() - 1 && t.token_to_id(token) < 0) std::abort();
    } catch (const facet::Error&) {  // empty, not UTF-8, or already in the vocabulary
    }
  }
  const auto& t = *tokenizer;
  const auto ids = t.encode(text);
  if (ids.size() < 2 || static_cast<int64_t>(ids.size()) > t.model_max_length || ids.front() != t.bos_id || ids.back() != t.eos_id)
    std::abort();
  for (int64_t id : ids)
    if (id < 0 || id >= t.vocab_size()) std::abort();
  if (static_cast<int64_t>(t.encode_padded(text).size()) != t.model_max_length) std::abort();
  const auto tokens = t.tokenize(text);
  if (tokens.size() < ids.size() - 2) std::abort();
  for (const auto& token : tokens)
    if (token.empty() || t.token_to_id(token) < 0) std::abort();
  return 0;
}
