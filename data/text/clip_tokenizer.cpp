#include "data/text/clip_tokenizer.h"

#include "core/error.h"
#include "core/file_io.h"
#include "core/utf8.h"
#include "data/text/unicode_tables.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <limits>
#include <optional>

namespace facet::data::text {

namespace {
// Named apart: the library is compiled in unity groups that share anonymous namespaces (cmake/FacetOptions.cmake).
namespace clip_tok {

namespace uc = unicode;

// transformers' CLIPTokenizer reads merges.txt's lines [1, 49152 - 256 - 2 + 1): the merges of CLIP's 49408 tokens.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr std::u32string_view kStartOfText = U"<|startoftext|>", kEndOfText = U"<|endoftext|>";

// ------------------------------------------------------------------------------------------------ UTF-8

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// Python's bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal subpart of an ill-formed sequence (the
// lead byte and the continuation bytes that were still acceptable), the byte that broke it read afresh.
std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out += static_cast<char32_t>(c);
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte (Unicode table 3-7)
    char32_t code = 0;
    if (c >= 0xC2 && c <= 0xDF) len = 2, code = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, code = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, code = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    size_t k = 1;
    for (; len && k < len && i + k < n; ++k) {
      const unsigned char b = p[i + k];
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
      code = (code << 6) | (b & 0x3F);
    }
    if (len && k == len) {
      out += code;
    } else {
      out += U'\uFFFD';
    }
    i += k;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ classes

bool ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_letter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return uc::in_ranges(uc::letters(), c);
}
bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return uc::in_ranges(uc::numbers(), c);
}
bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r');
  return uc::in_ranges(uc::spaces(), c);
}
// Matched by [^\s\p{L}\p{N}] under IGNORECASE.
bool is_other(char32_t c) {
  return !is_space(c) && !is_letter(c) && !is_number(c) && (c < 0x80 || !uc::in_ranges(uc::unmatched(), c));
}

// c equals the ASCII letter or punctuation p under the pre-tokenizer's IGNORECASE (the text is lower-cased already).
bool folds_to(char32_t c, char p) {
  if (c == static_cast<char32_t>(p)) return true;
  if (c < 0x80) return false;
  for (const auto& f : uc::folds_to_ascii())
    if (f.code == c) return f.ascii == p;
  return false;
}

bool matches_at(const std::u32string& s, size_t i, std::string_view pattern) {
  if (s.size() - i < pattern.size()) return false;
  for (size_t k = 0; k < pattern.size(); ++k)
    if (!folds_to(s[i + k], pattern[k])) return false;
  return true;
}

// ------------------------------------------------------------------------------------------------ str.lower()

char32_t lower_one(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  const auto table = uc::lower();
  const auto it = std::upper_bound(table.begin(), table.end(), c, [](char32_t v, const uc::LowerRange& r) { return v < r.first; });
  if (it == table.begin()) return c;
  const auto& r = *std::prev(it);
  if (c > r.last || (c - r.first) % r.stride) return c;
  return static_cast<char32_t>(static_cast<int64_t>(c) + r.delta);
}

// Python's final sigma: U+03A3 lower-cases to U+03C2 after a cased letter and not before one (case-ignorable
// characters such as combining marks and apostrophes skipped on both sides).
bool final_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  while (j > 0 && uc::in_ranges(uc::case_ignorable(), s[j - 1])) --j;
  if (j == 0 || !uc::in_ranges(uc::cased(), s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && uc::in_ranges(uc::case_ignorable(), s[k])) ++k;
  return k == s.size() || !uc::in_ranges(uc::cased(), s[k]);
}

std::u32string lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x3A3) {
      out += final_sigma(s, i) ? U'\u03C2' : U'\u03C3';
      continue;
    }
    bool multi = false;
    if (c >= 0x80)
      for (const auto& m : uc::lower_multi())
        if (m.code == c) {
          out += decode_utf8(m.utf8);
          multi = true;
        }
    if (!multi) out += lower_one(c);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ ftfy

std::optional<std::u32string> entity(std::string_view name) {
  const auto table = uc::ftfy_entities();
  const auto it = std::lower_bound(table.begin(), table.end(), name, [](const uc::Entity& e, std::string_view v) { return std::string_view(e.name) < v; });
  if (it != table.end() && std::string_view(it->name) == name) return decode_utf8(it->utf8);
  return std::nullopt;
}

// `&#...;` as html.unescape decodes it; nullopt where ftfy keeps the text (not a number, or decoded to ";").
std::optional<std::u32string> numeric_reference(std::string_view name) {
  std::string_view body = name.substr(2, name.size() - 3);
  int base = 10;
  if (body[0] == 'x' || body[0] == 'X') base = 16, body.remove_prefix(1);
  if (body.empty()) return std::nullopt;
  uint32_t number = 0;
  for (char ch : body) {
    int digit = -1;
    if (ch >= '0' && ch <= '9') digit = ch - '0';
    else if (base == 16 && ch >= 'a' && ch <= 'f') digit = ch - 'a' + 10;
    else if (base == 16 && ch >= 'A' && ch <= 'F') digit = ch - 'A' + 10;
    if (digit < 0) return std::nullopt;
    number = std::min<uint32_t>(number * base + digit, 0x110000);  // saturates: anything past U+10FFFF is U+FFFD
  }
  for (const auto& r : uc::charref_replacements())
    if (r.number == number) return std::u32string(1, r.code);
  if ((number >= 0xD800 && number <= 0xDFFF) || number > 0x10FFFF) return U"\uFFFD";
  if (uc::in_ranges(uc::charref_dropped(), number)) return U"";
  if (number == ';') return std::nullopt;  // ftfy: "html.unescape only decoded part of the string"
  return std::u32string(1, static_cast<char32_t>(number));
}

// ftfy.fixes.unescape_html: `&#?[0-9A-Za-z]{1,24};` replaced where ftfy knows it.
std::u32string unescape_html(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    const bool hash = i + 1 < s.size() && s[i + 1] == '#';
    const size_t j = i + 1 + hash;
    size_t k = j;
    while (k < s.size() && k - j <= 24 && ascii_alnum(s[k])) ++k;
    if (k == j || k - j > 24 || k >= s.size() || s[k] != ';') {
      out += s[i++];
      continue;
    }
    std::string name;
    for (size_t m = i; m <= k; ++m) name += static_cast<char>(s[m]);
    auto replaced = entity(name);
    if (!replaced && hash) replaced = numeric_reference(name);
    if (replaced) out += *replaced;
    else out.append(s, i, k + 1 - i);
    i = k + 1;
  }
  return out;
}

// The character-by-character fixers, in ftfy's order: fix_c1_controls, fix_latin_ligatures, fix_character_width,
// uncurl_quotes.
std::u32string fix_characters(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c >= 0x80 && c <= 0x9F) c = uc::ftfy_c1()[c - 0x80];
    if (c < 0x80) {
      out += c;
      continue;
    }
    std::u32string mapped(1, c);
    for (const auto& m : uc::ftfy_ligatures())
      if (m.code == c) mapped = decode_utf8(m.utf8);
    std::u32string widened;
    for (char32_t d : mapped) {
      bool multi = false;
      for (const auto& m : uc::ftfy_width_multi())
        if (m.code == d) widened += decode_utf8(m.utf8), multi = true;
      if (multi) continue;
      const auto table = uc::ftfy_width();
      const auto it = std::upper_bound(table.begin(), table.end(), d, [](char32_t v, const uc::WidthRange& r) { return v < r.first; });
      if (it != table.begin() && d <= std::prev(it)->last) d = static_cast<char32_t>(static_cast<int64_t>(d) + std::prev(it)->delta);
      widened += d;
    }
    for (char32_t d : widened) {
      if (d == 0x2BC || (d >= 0x2018 && d <= 0x201B)) d = '\'';  // ftfy.chardata.SINGLE_QUOTE_RE
      else if (d >= 0x201C && d <= 0x201F) d = '"';               // DOUBLE_QUOTE_RE
      out += d;
    }
  }
  return out;
}

// fix_line_breaks: CRLF, CR, U+2028, U+2029 and U+0085 to "\n".
std::u32string fix_line_breaks(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out += (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) ? U'\n' : c;
  }
  return out;
}

// remove_terminal_escapes (`\033\[((?:\d|;)*)([a-zA-Z])`, \d being any decimal digit), then remove_control_chars.
std::u32string remove_escapes_and_controls(const std::u32string& s) {
  std::u32string kept;
  kept.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 0x1B && i + 1 < s.size() && s[i + 1] == '[') {
      size_t k = i + 2;
      while (k < s.size() && (s[k] == ';' || (s[k] >= '0' && s[k] <= '9') || (s[k] >= 0x80 && uc::in_ranges(uc::decimal(), s[k])))) ++k;
      if (k < s.size() && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z'))) {
        i = k;
        continue;
      }
    }
    kept += s[i];
  }
  std::u32string out;
  out.reserve(kept.size());
  for (char32_t c : kept)
    if (!uc::in_ranges(uc::ftfy_controls(), c)) out += c;
  return out;
}

// ftfy.fix_and_explain on one line: the fixes until the text stops changing.
std::u32string fix_line(std::u32string text, bool html) {
  while (true) {
    const std::u32string before = text;
    if (html) text = unescape_html(text);
    text = remove_escapes_and_controls(fix_line_breaks(fix_characters(text)));
    if (text == before) return text;
  }
}

// ftfy.fix_text: line by line; HTML entities are left alone from the first line holding a "<" on.
std::u32string fix_text(const std::u32string& s) {
  std::u32string out;
  bool html = true;
  for (size_t start = 0; start < s.size();) {
    const size_t newline = s.find(U'\n', start);
    const size_t end = newline == std::u32string::npos ? s.size() : newline + 1;
    const std::u32string line = s.substr(start, end - start);
    if (line.find(U'<') != std::u32string::npos) html = false;
    out += fix_line(line, html);
    start = end;
  }
  return out;
}

// whitespace_clean(fix_text(text)).lower(): runs of \s to one space, stripped.
std::u32string clean(const std::u32string& segment) {
  const std::u32string fixed = fix_text(segment);
  std::u32string spaced;
  spaced.reserve(fixed.size());
  for (char32_t c : fixed) {
    if (!is_space(c)) spaced += c;
    else if (!spaced.empty() && spaced.back() != ' ') spaced += ' ';  // a run is one space, none in front
  }
  while (!spaced.empty() && spaced.back() == ' ') spaced.pop_back();
  return lower(spaced);
}

// GPT-2's bytes_to_unicode: the printable Latin-1 bytes stand for themselves, the others for U+0100 onwards.
std::vector<std::string> byte_characters() {
  std::vector<std::string> out(256);
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    append_utf8(out[b], printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++));
  }
  return out;
}

std::string special_name(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) return value["content"].get<std::string>();
  return {};
}

}  // namespace clip_tok
}  // namespace

// ---------------------------------------------------------------------------------------------------- loading

ClipTokenizer ClipTokenizer::load(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path))
    fail("{}: no such file or folder (a CLIP tokenizer folder with vocab.json and merges.txt, or its vocab.json)", path.string());
  const bool dir = fs::is_directory(path);
  const fs::path folder = dir ? path : path.parent_path();
  const fs::path vocab_path = dir ? path / "vocab.json" : path;
  const fs::path merges_path = folder / "merges.txt";
  const fs::path config_path = folder / "tokenizer_config.json";
  if (!fs::exists(vocab_path)) fail("{}: no such file (CLIP's vocab.json, token -> id)", vocab_path.string());
  if (!fs::exists(merges_path)) fail("{}: no such file (CLIP's BPE merges, beside {})", merges_path.string(), vocab_path.filename().string());

  ClipTokenizer t;
  t.byte_chars_ = clip_tok::byte_characters();
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_file(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", vocab_path.string(), e.what());
  }
  if (!vocab.is_object() || vocab.empty()) fail("{}: expected a JSON object of token -> id", vocab_path.string());
  std::vector<char> seen(vocab.size(), 0);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string& token = it.key();
    const auto& id = it.value();
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= static_cast<int64_t>(vocab.size()) ||
        seen[id.get<int64_t>()]++)
      fail("{}: \"{}\": {} is not a free id below the vocabulary's size {} (ids must be 0..{} once each)", vocab_path.string(),
           token, id.dump(), vocab.size(), vocab.size() - 1);
    t.vocab_.emplace(token, id.get<int64_t>());
  }

  const std::string merges = read_file(merges_path);
  // Python's merges.read().strip().split("\n")[1:49152 - 256 - 2 + 1], with file line numbers kept for messages.
  const size_t begin = merges.find_first_not_of(" \t\r\n\v\f");
  size_t line_number = begin == std::string::npos ? 1 : 1 + std::count(merges.begin(), merges.begin() + begin, '\n');
  const size_t end = begin == std::string::npos ? 0 : merges.find_last_not_of(" \t\r\n\v\f") + 1;
  size_t rank = 0;
  for (size_t pos = begin == std::string::npos ? 0 : begin, index = 0; pos < end && rank < clip_tok::kMaxMerges; ++index, ++line_number) {
    const size_t newline = std::min(merges.find('\n', pos), end);
    const std::string_view line(merges.data() + pos, newline - pos);
    pos = newline + 1;
    if (index == 0) continue;  // "#version: 0.2"
    std::vector<std::string> parts;
    for (size_t a = 0; a < line.size();) {
      const size_t b = line.find_first_of(" \t\r\v\f", a);
      const size_t stop = b == std::string_view::npos ? line.size() : b;
      if (stop > a) parts.emplace_back(line.substr(a, stop - a));
      a = stop + 1;
    }
    if (parts.size() != 2)
      fail("{}:{}: expected a merge, two tokens separated by a space, got \"{}\"", merges_path.string(), line_number, line);
    for (const auto& token : {parts[0], parts[1], parts[0] + parts[1]})
      if (!t.vocab_.count(token))
        fail("{}:{}: merge \"{} {}\": \"{}\" is not in {}", merges_path.string(), line_number, parts[0], parts[1], token,
             vocab_path.string());
    t.ranks_[parts[0] + " " + parts[1]] = static_cast<int64_t>(rank++);  // a repeated merge keeps its later rank
  }

  // tokenizer_config.json as SD's tokenizer folders hold it; CLIPTokenizer's defaults otherwise.
  std::string bos = "<|startoftext|>", eos = "<|endoftext|>", unk = "<|endoftext|>", pad = "<|endoftext|>";
  fs::path named_by = vocab_path;  // where a missing special token comes from
  if (fs::exists(config_path)) {
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", config_path.string(), e.what());
    }
    if (!config.is_object()) fail("{}: expected a JSON object", config_path.string());
    if (config.contains("model_max_length")) {
      const auto& m = config["model_max_length"];
      if (!m.is_number_integer() || m.get<int64_t>() < 2 || m.get<int64_t>() > (1 << 20))
        fail("{}: model_max_length {} is not a usable length (an integer 2..{}; CLIP's is 77)", config_path.string(), m.dump(), 1 << 20);
      t.model_max_length = m.get<int64_t>();
    }
    const std::array<std::pair<const char*, std::string*>, 4> fields = {{{"bos_token", &bos}, {"eos_token", &eos}, {"unk_token", &unk}, {"pad_token", &pad}}};
    for (const auto& [key, value] : fields) {
      if (!config.contains(key) || config[key].is_null()) continue;
      *value = clip_tok::special_name(config[key]);
      if (value->empty())
        fail("{}: {}: expected a token string or {{\"content\": ...}}, got {}", config_path.string(), key, config[key].dump());
    }
    named_by = config_path;
  }
  const auto id_of = [&](const std::string& token, const char* what) {
    const auto it = t.vocab_.find(token);
    if (it == t.vocab_.end())
      fail("{}: the {} \"{}\" is not in {}", named_by.string(), what, token, vocab_path.string());
    return it->second;
  };
  t.bos_id = id_of(bos, "bos token");
  t.eos_id = id_of(eos, "eos token");
  t.unk_id_ = id_of(unk, "unk token");
  t.pad_id = id_of(pad, "pad token");
  // transformers' added-token trie holds every special token, pad included: such a string in the text is that token.
  const std::array<std::pair<std::string, int64_t>, 4> specials = {{{bos, t.bos_id}, {eos, t.eos_id}, {unk, t.unk_id_}, {pad, t.pad_id}}};
  for (const auto& [token, id] : specials) {
    auto text = clip_tok::decode_utf8(token);
    if (std::none_of(t.split_.begin(), t.split_.end(), [&](const auto& s) { return s.first == text; }))
      t.split_.emplace_back(std::move(text), id);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------- added tokens

int64_t ClipTokenizer::add_token(const std::string& token) {
  if (token.empty()) fail("clip tokenizer: add_token(\"\"): a new token needs at least one character");
  if (const auto bad = first_invalid_utf8(token))
    fail("clip tokenizer: add_token: the token is not valid UTF-8 (byte {})", *bad);
  if (const auto it = added_.find(token); it != added_.end()) return it->second;
  if (const auto it = vocab_.find(token); it != vocab_.end())
    fail("clip tokenizer: add_token(\"{}\"): already in the vocabulary (id {}); a new token must be a new string such as \"<new1>\"",
         token, it->second);
  const int64_t id = vocab_size();
  added_.emplace(token, id);
  split_.emplace_back(clip_tok::decode_utf8(token), id);
  return id;
}

int64_t ClipTokenizer::token_to_id(std::string_view token) const {
  if (const auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  if (const auto it = added_.find(token); it != added_.end()) return it->second;
  return -1;
}

int64_t ClipTokenizer::vocab_size() const { return static_cast<int64_t>(vocab_.size() + added_.size()); }

// ---------------------------------------------------------------------------------------------------- encoding

// transformers' Trie.split: at the leftmost position where a special or added token starts, the longest one there.
std::vector<ClipTokenizer::Piece> ClipTokenizer::split_specials(std::string_view text) const {
  const std::u32string s = clip_tok::decode_utf8(text);
  std::vector<Piece> pieces;
  size_t start = 0;
  for (size_t i = 0; i < s.size();) {
    const std::pair<std::u32string, int64_t>* best = nullptr;
    for (const auto& candidate : split_)
      if (s.compare(i, candidate.first.size(), candidate.first) == 0 && (!best || candidate.first.size() > best->first.size()))
        best = &candidate;
    if (!best) {
      ++i;
      continue;
    }
    if (i > start) pieces.push_back({s.substr(start, i - start), -1});
    pieces.push_back({best->first, best->second});
    i += best->first.size();
    start = i;
  }
  if (start < s.size()) pieces.push_back({s.substr(start), -1});
  return pieces;
}

// CLIPTokenizer.bpe: merge the adjacent pair of lowest rank, everywhere it occurs (left to right), until none ranks.
void ClipTokenizer::bpe(std::string_view word_utf8, std::vector<std::string>& out) const {
  std::vector<std::string> word;
  word.reserve(word_utf8.size());
  for (unsigned char b : word_utf8) word.push_back(byte_chars_[b]);
  word.back() += "</w>";
  std::string key;
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      if (const auto it = ranks_.find(key); it != ranks_.end() && it->second < best) best = it->second, at = i;
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    const std::string first = word[at], second = word[at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i++]));
      }
    }
    word = std::move(merged);
  }
  for (auto& symbol : word) out.push_back(std::move(symbol));
}

// CLIPTokenizer._tokenize of one segment between special / added tokens.
void ClipTokenizer::append_tokens(const std::u32string& segment, std::vector<std::string>& out) const {
  const std::u32string s = clip_tok::clean(segment);
  const auto word = [&](size_t from, size_t to) {
    const std::u32string_view piece(s.data() + from, to - from);
    // CLIPTokenizer's bpe cache holds these two whole: the special tokens written in (lower-cased) text.
    if (piece == clip_tok::kStartOfText || piece == clip_tok::kEndOfText) out.push_back(clip_tok::to_utf8(piece));
    else bpe(clip_tok::to_utf8(piece), out);
  };
  static constexpr std::array<std::string_view, 2> kSpecials = {"<|startoftext|>", "<|endoftext|>"};
  static constexpr std::array<std::string_view, 7> kContractions = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  for (size_t i = 0; i < s.size();) {
    const char32_t c = s[i];
    size_t matched = 0;
    for (const auto& pattern : c == '<' ? std::span<const std::string_view>(kSpecials)
                               : c == '\'' ? std::span<const std::string_view>(kContractions)
                                           : std::span<const std::string_view>())
      if (clip_tok::matches_at(s, i, pattern)) {
        matched = pattern.size();
        break;
      }
    if (!matched) {
      if (clip_tok::is_letter(c)) {
        while (i + matched < s.size() && clip_tok::is_letter(s[i + matched])) ++matched;
      } else if (clip_tok::is_number(c)) {
        matched = 1;
      } else if (clip_tok::is_other(c)) {
        while (i + matched < s.size() && clip_tok::is_other(s[i + matched])) ++matched;
      }
    }
    if (!matched) {  // whitespace, or U+0345 which no class matches
      ++i;
      continue;
    }
    word(i, i + matched);
    i += matched;
  }
}

std::vector<std::pair<std::string, int64_t>> ClipTokenizer::tokens_and_ids(std::string_view text) const {
  if (byte_chars_.empty()) fail("clip tokenizer: not loaded (ClipTokenizer::load a vocab.json first)");
  std::vector<std::pair<std::string, int64_t>> out;
  std::vector<std::string> tokens;
  for (const auto& piece : split_specials(text)) {
    if (piece.id >= 0) {
      out.emplace_back(clip_tok::to_utf8(piece.text), piece.id);
      continue;
    }
    tokens.clear();
    append_tokens(piece.text, tokens);
    for (auto& token : tokens) {
      const auto it = vocab_.find(token);
      const int64_t id = it == vocab_.end() ? unk_id_ : it->second;  // CLIPTokenizer: encoder.get(token, unk)
      out.emplace_back(std::move(token), id);
    }
  }
  return out;
}

std::vector<std::string> ClipTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (auto& [token, id] : tokens_and_ids(text)) out.push_back(std::move(token));
  return out;
}

std::vector<int64_t> ClipTokenizer::encode(std::string_view text) const {
  const auto tokens = tokens_and_ids(text);
  const size_t keep = std::min(tokens.size(), static_cast<size_t>(std::max<int64_t>(model_max_length - 2, 0)));
  std::vector<int64_t> ids;
  ids.reserve(keep + 2);
  ids.push_back(bos_id);
  for (size_t i = 0; i < keep; ++i) ids.push_back(tokens[i].second);
  ids.push_back(eos_id);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(std::string_view text) const {
  auto ids = encode(text);
  if (static_cast<int64_t>(ids.size()) < model_max_length) ids.resize(model_max_length, pad_id);
  return ids;
}

}  // namespace facet::data::text
