"""Writes data/text/unicode_tables.cpp: the character tables of the CLIP BPE tokenizer (data/text/clip_tokenizer.cpp),
taken from the libraries the reference (transformers 4's slow CLIPTokenizer with ftfy installed) runs on, so that the
C++ classifies every code point as they do:

- letters / numbers / spaces: what the `regex` module's [\\p{L}], [\\p{N}] and \\s match (the pre-tokenizer's classes,
  compiled with IGNORECASE as CLIPTokenizer does; `regex` follows a newer Unicode than Python's unicodedata, so these
  come from `regex` itself, not from unicodedata), and the code points that under IGNORECASE none of the pre-tokenizer's
  classes match (U+0345: it is no letter, but its case partner iota is, so [^\\s\\p{L}\\p{N}] rejects it too);
- folds_to_ascii: the code points that str.lower() leaves alone but that IGNORECASE matches to an ASCII letter
  (U+017F LONG S matches "s", so "'\u017f" is a contraction like "'s");
- lower: str.lower() (Python's unicodedata and SpecialCasing) as strided ranges with a delta, the multi-code-point
  lowerings apart; cased / case_ignorable: the properties str.lower() consults for the final sigma, read off
  str.lower()'s own behaviour;
- decimal: Python re's \\d (str.isdecimal()), which ftfy's terminal-escape pattern uses;
- ftfy's tables: control characters it removes, the C1 controls it reads as Windows-1252, the width map, the Latin
  ligatures, and its HTML entities for the HTML 4 names (+ &apos;) with the all-caps spellings it also decodes; and
  html.unescape's numeric-reference special cases.

Reproducible: the output depends only on the versions named in its header (Python / unicodedata, regex, ftfy).
Run with the project's venv python: tools/unicode_tables.py
"""
import html
import html.entities
import os
import re
import sys
import unicodedata

import ftfy
import ftfy.bad_codecs  # noqa: F401  (registers sloppy-windows-1252)
import ftfy.chardata
import regex

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "text", "unicode_tables.cpp")
ALL = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def ranges(codes):
    out = []
    for c in sorted(codes):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def matching(pattern, flags=0):
    r = regex.compile(pattern, flags)
    return {c for c in ALL if r.fullmatch(chr(c))}


def cpp_string(s):
    """A C++ string literal of s in UTF-8: visible characters as themselves, the others (marks, spaces, controls) as
    octal escapes of their bytes (at most 3 digits, so no escape swallows the next character)."""
    out = []
    for ch in s:
        visible = unicodedata.category(ch)[0] in "LNPS" and ch not in '"\\?'
        out.append(ch if visible else "".join(f"\\{b:03o}" for b in ch.encode("utf-8")))
    return '"' + "".join(out) + '"'


def rows(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(items[i:i + per_line]))
    return "\n".join(lines)


def range_table(name, codes, comment):
    items = [f"{{0x{a:X}, 0x{b:X}}}," for a, b in ranges(codes)]
    return f"// {comment}\nconstexpr CodeRange {name}[] = {{\n{rows(items, 6)}\n}};\n"


def main():
    I = regex.IGNORECASE
    letters, numbers, spaces = matching(r"[\p{L}]", I), matching(r"[\p{N}]", I), matching(r"\s", I)
    assert letters == matching(r"[\p{L}]") and numbers == matching(r"[\p{N}]") and spaces == matching(r"\s")
    other = matching(r"[^\s\p{L}\p{N}]", I)
    unmatched = set(ALL) - letters - numbers - spaces - other
    assert not (letters & numbers) and not (letters & spaces) and not (numbers & spaces) and not (other & (letters | numbers | spaces))

    folds = []
    for c in ALL:
        if c < 0x80 or chr(c).lower() != chr(c):
            continue
        for a in "abcdefghijklmnopqrstuvwxyz":
            if regex.fullmatch(a, chr(c), I):
                folds.append((c, a))
    assert all(len(regex.findall(r"'s|'t|'re|'ve|'m|'ll|'d", "'" + chr(c) + a[1:], I)) for c, a in folds)

    lower, lower_multi = {}, {}
    for c in ALL:
        low = chr(c).lower()
        if len(low) != 1:
            lower_multi[c] = low
        elif ord(low) != c:
            lower[c] = ord(low) - c
    strided = []  # [first, last, stride, delta]
    for c, d in sorted(lower.items()):
        if strided:
            first, last, stride, delta = strided[-1]
            step = c - last
            # A stride of 2 only over code points that str.lower() leaves alone, so the ranges never interleave.
            if delta == d and (stride == step or (first == last and step in (1, 2))) and (step == 1 or c - 1 not in lower):
                strided[-1] = [first, c, step, d]
                continue
        strided.append([c, c, 1, d])
    assert lower[0x3A3] == 0x3C3 - 0x3A3 and "AB\u03a3".lower()[-1] == "\u03c2"

    # Final sigma: str.lower() turns U+03A3 into U+03C2 after a cased letter (case-ignorable ones skipped) and before no
    # cased one. With c between "A" or " " and the sigma: "A c Σ" gives ς iff c is cased or case-ignorable, " c Σ"
    # iff c is cased and not case-ignorable.
    cased = {c for c in ALL if chr(c).islower() or chr(c).isupper() or chr(c).istitle()}
    after_letter = {c for c in ALL if ("A" + chr(c) + "\u03a3").lower()[-1] == "\u03c2"}
    after_space = {c for c in ALL if (" " + chr(c) + "\u03a3").lower()[-1] == "\u03c2"}
    ignorable = {c for c in ALL if (c not in after_space) if c in cased} | {c for c in after_letter if c not in cased}
    for c in ALL:  # the other direction agrees: "AΣc" keeps σ iff c is cased and not ignorable
        assert (("A\u03a3" + chr(c)).lower()[1] == "\u03c3") == (c in cased and c not in ignorable), hex(c)

    decimal = {c for c in ALL if chr(c).isdecimal()}
    assert decimal == {c for c in ALL if re.fullmatch(r"\d", chr(c))}
    controls = set(ftfy.chardata.CONTROL_CHARS)
    c1 = [(b, ord(bytes([b]).decode("sloppy-windows-1252"))) for b in range(0x80, 0xA0)]
    assert all(ftfy.fixes.fix_c1_controls(chr(b)) == chr(u) for b, u in c1)
    width_single = sorted((k, ord(v) - k) for k, v in ftfy.chardata.WIDTH_MAP.items() if len(v) == 1)
    width_multi = sorted((k, v) for k, v in ftfy.chardata.WIDTH_MAP.items() if len(v) != 1)
    width_ranges = []  # [first, last, delta]
    for c, d in width_single:
        if width_ranges and width_ranges[-1][1] == c - 1 and width_ranges[-1][2] == d:
            width_ranges[-1][1] = c
        else:
            width_ranges.append([c, c, d])
    ligatures = sorted(ftfy.chardata.LIGATURES.items())
    html4 = {n.lower() for n in html.entities.name2codepoint} | {"apos"}
    entities = sorted(((k, v) for k, v in ftfy.chardata.HTML_ENTITIES.items() if k[1:-1].lower() in html4),
                      key=lambda kv: kv[0].encode("utf-8"))
    charref_replaced = sorted(html._invalid_charrefs.items())
    charref_dropped = set(html._invalid_codepoints) - set(html._invalid_charrefs)

    out = [f"""// Generated by tools/unicode_tables.py; do not edit. Python {sys.version.split()[0]} (unicodedata
// {unicodedata.unidata_version}), regex {regex.__version__}, ftfy {ftfy.__version__}. What each table is: the generator's docstring.
#include "data/text/unicode_tables.h"

namespace facet::data::text::unicode {{

namespace {{

""",
           range_table("kLetterData", letters, "regex [\\p{L}]"),
           range_table("kNumberData", numbers, "regex [\\p{N}]"),
           range_table("kSpaceData", spaces, "regex \\s"),
           range_table("kUnmatchedData", unmatched, "matched by none of the pre-tokenizer's classes under IGNORECASE"),
           "// code points str.lower() keeps that IGNORECASE matches to an ASCII letter\nconstexpr AsciiFold kFoldData[] = {\n"
           + rows([f"{{0x{c:X}, '{a}'}}," for c, a in folds], 6) + "\n};\n",
           "// str.lower(): first, last, stride, delta\nconstexpr LowerRange kLowerData[] = {\n"
           + rows([f"{{0x{a:X}, 0x{b:X}, {s}, {d}}}," for a, b, s, d in strided], 4) + "\n};\n",
           "// str.lower() to several code points\nconstexpr CodeMapping kLowerMultiData[] = {\n"
           + rows([f"{{0x{c:X}, {cpp_string(v)}}}," for c, v in sorted(lower_multi.items())], 4) + "\n};\n",
           range_table("kCasedData", cased, "Cased (str.lower()'s final sigma)"),
           range_table("kCaseIgnorableData", ignorable, "Case_Ignorable (str.lower()'s final sigma)"),
           range_table("kDecimalData", decimal, "Python re \\d (ftfy's terminal-escape pattern)"),
           range_table("kControlData", controls, "ftfy remove_control_chars"),
           "// ftfy fix_c1_controls: U+0080..U+009F as sloppy Windows-1252\nconstexpr char32_t kC1Data[] = {\n"
           + rows([f"0x{u:X}," for _, u in c1], 8) + "\n};\n",
           "// ftfy fix_character_width: first, last, delta\nconstexpr WidthRange kWidthData[] = {\n"
           + rows([f"{{0x{a:X}, 0x{b:X}, {d}}}," for a, b, d in width_ranges], 4) + "\n};\n",
           "// ftfy fix_character_width to several code points\nconstexpr CodeMapping kWidthMultiData[] = {\n"
           + rows([f"{{0x{c:X}, {cpp_string(v)}}}," for c, v in width_multi], 4) + "\n};\n",
           "// ftfy fix_latin_ligatures\nconstexpr CodeMapping kLigatureData[] = {\n"
           + rows([f"{{0x{c:X}, {cpp_string(v)}}}," for c, v in ligatures], 4) + "\n};\n",
           "// ftfy unescape_html, HTML 4 names (+ &apos;) and their all-caps spellings; sorted by UTF-8 bytes\n"
           "constexpr Entity kEntityData[] = {\n"
           + rows([f"{{{cpp_string(k)}, {cpp_string(v)}}}," for k, v in entities], 3) + "\n};\n",
           "// html.unescape's numeric references that are not chr(n)\nconstexpr CharrefReplacement kCharrefData[] = {\n"
           + rows([f"{{0x{n:X}, 0x{ord(v):X}}}," for n, v in charref_replaced], 6) + "\n};\n",
           range_table("kCharrefDroppedData", charref_dropped, "html.unescape's numeric references that decode to nothing"),
           """
}  // namespace

std::span<const CodeRange> letters() { return kLetterData; }
std::span<const CodeRange> numbers() { return kNumberData; }
std::span<const CodeRange> spaces() { return kSpaceData; }
std::span<const CodeRange> unmatched() { return kUnmatchedData; }
std::span<const AsciiFold> folds_to_ascii() { return kFoldData; }
std::span<const LowerRange> lower() { return kLowerData; }
std::span<const CodeMapping> lower_multi() { return kLowerMultiData; }
std::span<const CodeRange> cased() { return kCasedData; }
std::span<const CodeRange> case_ignorable() { return kCaseIgnorableData; }
std::span<const CodeRange> decimal() { return kDecimalData; }
std::span<const CodeRange> ftfy_controls() { return kControlData; }
std::span<const char32_t> ftfy_c1() { return kC1Data; }
std::span<const WidthRange> ftfy_width() { return kWidthData; }
std::span<const CodeMapping> ftfy_width_multi() { return kWidthMultiData; }
std::span<const CodeMapping> ftfy_ligatures() { return kLigatureData; }
std::span<const Entity> ftfy_entities() { return kEntityData; }
std::span<const CharrefReplacement> charref_replacements() { return kCharrefData; }
std::span<const CodeRange> charref_dropped() { return kCharrefDroppedData; }

}  // namespace facet::data::text::unicode
"""]
    text = "\n".join(out).replace("\n\n\n", "\n\n")
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {os.path.normpath(OUT)}: {len(text)} bytes; ranges: letters {len(ranges(letters))}, numbers "
          f"{len(ranges(numbers))}, lower {len(strided)}, cased {len(ranges(cased))}, ignorable {len(ranges(ignorable))}, "
          f"entities {len(entities)}; unmatched {[hex(c) for c in sorted(unmatched)]}, folds {folds}")


if __name__ == "__main__":
    main()
