// CLIP's byte-level BPE tokenizer, the one Stable Diffusion 1.x conditions on, matching transformers 4's slow
// CLIPTokenizer with ftfy installed (what SD pipelines load from the tokenizer/ folder; OpenAI's clip/simple_tokenizer.py
// and open_clip's SimpleTokenizer add html.unescape twice, which transformers does not). Per call:
//  1. the text is decoded as UTF-8; each ill-formed sequence becomes one U+FFFD, as Python's
//     bytes.decode("utf-8", errors="replace") does (maximal subparts), so a bad byte never throws;
//  2. the special-token strings (bos / eos / unk / pad of tokenizer_config.json) and the added tokens are split out
//     first, exactly and case-sensitively (leftmost, longest; transformers' added-token trie), and become their ids;
//  3. each remaining segment is cleaned as ftfy.fix_text would, then whitespace runs -> one space, strip, str.lower();
//  4. it is cut by CLIP's regex <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (compiled IGNORECASE: after lower() only U+017F LONG S still differs, matching "s", so "'ſ" is a contraction and
//     "<|ſtartoftext|>" one word; U+0345 matches no class and is dropped like whitespace);
//  5. each piece's UTF-8 bytes are mapped to GPT-2's printable byte characters and BPE-merged by rank, "</w>" on the
//     last symbol; the pieces "<|startoftext|>" / "<|endoftext|>" are looked up whole (so "<|ENDOFTEXT|>" in a prompt
//     is the EOS token too, through the lower-casing).
// Character classes, lower-casing (with the final sigma) and ftfy's tables come from tools/unicode_tables.py.
//
// ftfy.fix_text (6.3) as reproduced: it runs on each line (to "\n"), its fixes repeated until nothing changes:
//  - unescape_html: `&#?[0-9A-Za-z]{1,24};` references; named ones for the HTML 4 names and &apos; (&amp; &lt; &gt;
//    &quot; &nbsp; &eacute; &mdash; &hellip; ...) and ftfy's all-caps spellings of them (&EACUTE; -> É, &SZLIG; -> SS);
//    numeric &#NNN; / &#xHH; as html.unescape decodes them (C1 numbers as Windows-1252, surrogates and > U+10FFFF ->
//    U+FFFD, noncharacters and controls -> nothing; a result of ";" keeps the reference as text); skipped from the
//    first line holding a "<" on (ftfy's "auto": it takes such text for HTML); &amp;lt; decodes to "<" in two rounds;
//  - fix_c1_controls (U+0080..U+009F as Windows-1252), fix_latin_ligatures, fix_character_width (fullwidth /
//    halfwidth forms, U+3000), uncurl_quotes (U+02BC, U+2018..U+201B -> ', U+201C..U+201F -> "), fix_line_breaks,
//    remove_terminal_escapes (ESC [ digits/; letter), remove_control_chars.
// Not reproduced: fix_encoding (mojibake repair: "cafÃ©" stays as typed, where ftfy reads "café"); NFC normalisation
// (decomposed accents, "e" + U+0301, stay decomposed and tokenize differently from "é"); HTML5-only entity names
// (&check;, &Jscr;, ... stay text); fix_surrogates has nothing to do on UTF-8 input; ftfy's 1,000,000-character
// segments. Prompts typed as plain text (ASCII, accented letters in NFC, CJK, emoji, curly quotes, &amp;-style
// entities) tokenize exactly as the reference's; tests/data/test_clip_tokenizer.cpp checks them against golden.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace facet::data::text {

class ClipTokenizer {
 public:
  // `path`: a directory holding vocab.json and merges.txt (and optionally tokenizer_config.json: model_max_length,
  // pad_token, bos/eos/unk token strings as SD's tokenizer folder has them), or the vocab.json itself.
  // As transformers: merges.txt's first line ("#version: 0.2") is skipped and at most 48894 merges are read; a merge
  // listed twice takes its later rank.
  static ClipTokenizer load(const std::filesystem::path& path);
  // BOS + BPE ids of the cleaned text + EOS, truncated to model_max_length (BOS + first max-2 tokens + EOS), as
  // tokenizer(text, truncation=True, max_length=model_max_length).input_ids.
  std::vector<int64_t> encode(std::string_view text) const;
  // encode() padded with pad_id to model_max_length (padding="max_length").
  std::vector<int64_t> encode_padded(std::string_view text) const;
  // The BPE token strings of the text (no BOS/EOS), as tokenizer.tokenize(text).
  std::vector<std::string> tokenize(std::string_view text) const;
  // A new whole token (Custom Diffusion / DETEX placeholders such as "<new1>", "sks" is NOT one of these: it is plain text),
  // as transformers' tokenizer.add_tokens([token]): it gets the next id after the vocabulary (and earlier added tokens),
  // and occurrences in the text are split out before cleaning/BPE and map to that id. Returns the id; adding an
  // existing added token returns its id; a token already in the vocabulary is an error naming it.
  // Matching is exact and case-sensitive, as the slow tokenizer's ("<NEW1>" is the text "<", "new", "1", ">"; the fast
  // tokenizers-backed one, whose added tokens are normalized, would match it), and anywhere, inside words too.
  int64_t add_token(const std::string& token);
  int64_t token_to_id(std::string_view token) const;  // -1 when absent (added tokens included)
  int64_t vocab_size() const;                          // vocabulary + added tokens
  int64_t bos_id = 49406, eos_id = 49407, pad_id = 49407;
  int64_t model_max_length = 77;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Table = std::unordered_map<std::string, int64_t, Hash, std::equal_to<>>;
  // A piece of the text: a token split out whole (id >= 0, text its string) or text to clean and BPE (id -1).
  struct Piece {
    std::u32string text;
    int64_t id = -1;
  };

  std::vector<Piece> split_specials(std::string_view text) const;
  void bpe(std::string_view word_utf8, std::vector<std::string>& out) const;
  void append_tokens(const std::u32string& segment, std::vector<std::string>& out) const;
  std::vector<std::pair<std::string, int64_t>> tokens_and_ids(std::string_view text) const;

  Table vocab_;   // token string (GPT-2 byte characters, UTF-8) -> id, ids 0..size-1
  Table ranks_;   // "first second" -> merge rank
  Table added_;   // added token -> id
  std::vector<std::pair<std::u32string, int64_t>> split_;  // special-token strings and added tokens, split out whole
  std::vector<std::string> byte_chars_;                    // byte -> its printable character (bytes_to_unicode)
  int64_t unk_id_ = 49407;
};

}  // namespace facet::data::text
