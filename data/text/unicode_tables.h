// Character tables of the CLIP BPE tokenizer (clip_tokenizer.h): the pre-tokenizer's classes as the `regex` module
// matches them, Python's str.lower(), and ftfy's / html.unescape's replacement tables. unicode_tables.cpp is generated
// by tools/unicode_tables.py from those libraries (its docstring says what each table holds and why).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <span>

namespace facet::data::text::unicode {

struct CodeRange {
  char32_t first, last;  // inclusive
};
struct LowerRange {
  char32_t first, last;  // first, first + stride, ..., last lower-case to code + delta
  uint8_t stride;
  int32_t delta;
};
struct WidthRange {
  char32_t first, last;
  int32_t delta;
};
struct CodeMapping {
  char32_t code;
  const char* utf8;
};
struct AsciiFold {
  char32_t code;
  char ascii;
};
struct Entity {
  const char* name;  // "&amp;"
  const char* utf8;
};
struct CharrefReplacement {
  char32_t number, code;
};

std::span<const CodeRange> letters();    // regex [\p{L}]
std::span<const CodeRange> numbers();    // regex [\p{N}]
std::span<const CodeRange> spaces();     // regex \s
std::span<const CodeRange> unmatched();  // none of the pre-tokenizer's classes under IGNORECASE (U+0345)
std::span<const AsciiFold> folds_to_ascii();  // kept by str.lower(), IGNORECASE-equal to an ASCII letter (U+017F ~ s)
std::span<const LowerRange> lower();          // str.lower() to one code point, sorted, never interleaved
std::span<const CodeMapping> lower_multi();   // str.lower() to several (U+0130)
std::span<const CodeRange> cased();
std::span<const CodeRange> case_ignorable();
std::span<const CodeRange> decimal();         // Python re \d (ftfy's terminal-escape pattern)
std::span<const CodeRange> ftfy_controls();   // removed by remove_control_chars
std::span<const char32_t> ftfy_c1();          // U+0080 + i -> ftfy_c1()[i] (fix_c1_controls)
std::span<const WidthRange> ftfy_width();     // fix_character_width
std::span<const CodeMapping> ftfy_width_multi();
std::span<const CodeMapping> ftfy_ligatures();  // fix_latin_ligatures, sorted by code
std::span<const Entity> ftfy_entities();        // sorted by name's bytes
std::span<const CharrefReplacement> charref_replacements();  // sorted by number
std::span<const CodeRange> charref_dropped();

inline bool in_ranges(std::span<const CodeRange> table, char32_t c) {
  const auto it = std::upper_bound(table.begin(), table.end(), c, [](char32_t v, const CodeRange& r) { return v < r.first; });
  return it != table.begin() && c <= std::prev(it)->last;
}

}  // namespace facet::data::text::unicode
