// The CLIP BPE tokenizer against transformers 4's slow CLIPTokenizer with ftfy (golden.json from
// tools/golden/diffusion_golden.py, on CLIP's vocabulary cut to its first 3000 merges): ids, padded ids and
// token strings of each prompt, ftfy's cleaning, bytes that are not UTF-8, added placeholder tokens; and each
// broken tokenizer file is an error naming the file (and the line of merges.txt).
#include "data/text/clip_tokenizer.h"

#include "core/error.h"
#include "core/file_io.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace facet::data::test_clip_tokenizer {
namespace {

namespace fs = std::filesystem;
using text::ClipTokenizer;
using ::testing::HasSubstr;

const fs::path kFixture = fs::path(test_support::kSourceDir) / "tests/fixtures/generative/clip_tokenizer";

const nlohmann::json& golden() {
  static const nlohmann::json g = nlohmann::json::parse(read_file(kFixture / "golden.json"));
  return g;
}

// Each record: encode() == "ids", encode_padded() == "input_ids", and the tokens kept by truncation == "tokens".
void expect_records(const ClipTokenizer& t, const nlohmann::json& records, bool from_hex = false) {
  ASSERT_FALSE(records.empty());
  for (const auto& c : records) {
    std::string text = c["text"].get<std::string>();
    if (from_hex) {
      const std::string hex = c["utf8_hex"].get<std::string>();
      text.clear();
      for (size_t i = 0; i + 1 < hex.size(); i += 2) text += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    SCOPED_TRACE(c["text"].dump());
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(t.encode(text), ids);
    EXPECT_EQ(t.encode_padded(text), c["input_ids"].get<std::vector<int64_t>>());
    auto tokens = t.tokenize(text);
    ASSERT_GE(tokens.size(), ids.size() - 2);
    tokens.resize(ids.size() - 2);
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>());
  }
}

TEST(ClipTokenizer, LoadsTheFolderOrItsVocabJson) {
  const auto t = ClipTokenizer::load(kFixture);
  EXPECT_EQ(t.vocab_size(), golden()["vocab_size"].get<int64_t>());
  EXPECT_EQ(t.bos_id, golden()["bos_id"].get<int64_t>());
  EXPECT_EQ(t.eos_id, golden()["eos_id"].get<int64_t>());
  EXPECT_EQ(t.pad_id, golden()["pad_id"].get<int64_t>());
  EXPECT_EQ(t.model_max_length, 77);
  EXPECT_EQ(t.token_to_id("<|startoftext|>"), t.bos_id);
  EXPECT_EQ(t.token_to_id("dog</w>"), 1929);
  EXPECT_EQ(t.token_to_id("<new1>"), -1);
  EXPECT_EQ(ClipTokenizer::load(kFixture / "vocab.json").encode("a photo of a sks dog"), t.encode("a photo of a sks dog"));
}

TEST(ClipTokenizer, MatchesTheSlowTokenizerOnPrompts) { expect_records(ClipTokenizer::load(kFixture), golden()["cases"]); }

// ftfy's fixes (HTML entities, C1 controls, ligatures, widths, quotes, line breaks, escapes, controls), str.lower()
// with the final sigma and U+0130, the regex's IGNORECASE (U+017F as "s"), U+0345 dropped, classes of newer Unicode.
TEST(ClipTokenizer, CleansTextAsFtfyAndLowerDo) { expect_records(ClipTokenizer::load(kFixture), golden()["cleaning_cases"]); }

// Ill-formed UTF-8 is read as Python's bytes.decode("utf-8", "replace") reads it: one U+FFFD per maximal subpart.
TEST(ClipTokenizer, InvalidUtf8BecomesReplacementCharacters) {
  const auto t = ClipTokenizer::load(kFixture);
  expect_records(t, golden()["invalid_utf8_cases"], /*from_hex=*/true);
  EXPECT_EQ(t.encode(std::string("\xff\xfe", 2)), t.encode("\xef\xbf\xbd\xef\xbf\xbd"));
  EXPECT_EQ(t.encode(std::string("a\0b", 3)), t.encode("ab"));  // NUL is a control character ftfy removes
}

TEST(ClipTokenizer, AddedTokensAreSplitOutAsWrittenAndGetTheNextIds) {
  auto t = ClipTokenizer::load(kFixture);
  const auto& added = golden()["added_tokens"];
  const auto tokens = added["tokens"].get<std::vector<std::string>>();
  const auto ids = added["ids"].get<std::vector<int64_t>>();
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(t.add_token(tokens[i]), ids[i]);
  EXPECT_EQ(t.vocab_size(), added["vocab_size"].get<int64_t>());
  EXPECT_EQ(t.add_token(tokens[0]), ids[0]);  // again: the same id, nothing new
  EXPECT_EQ(t.vocab_size(), added["vocab_size"].get<int64_t>());
  EXPECT_EQ(t.token_to_id(tokens[1]), ids[1]);
  expect_records(t, added["cases"]);
  // The slow tokenizer matches added tokens only as written; transformers 5's fast one also in other cases.
  for (const auto& c : added["cases"]) {
    if (c["text"] == "A <NEW1> cat") {
      EXPECT_NE(c["ids"], c["transformers5_ids"]);
    }
  }
}

TEST(ClipTokenizer, AddingAVocabularyTokenIsAnError) {
  auto t = ClipTokenizer::load(kFixture);
  const auto message = [&](const std::string& token) {
    try {
      t.add_token(token);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_THAT(message("dog</w>"), HasSubstr("add_token(\"dog</w>\"): already in the vocabulary (id 1929)"));
  EXPECT_THAT(message("<|endoftext|>"), HasSubstr("already in the vocabulary"));
  EXPECT_THAT(message(""), HasSubstr("at least one character"));
  EXPECT_THAT(message("bad\xff"), HasSubstr("not valid UTF-8"));
  EXPECT_EQ(t.vocab_size(), golden()["vocab_size"].get<int64_t>());
}

TEST(ClipTokenizer, TruncatesToModelMaxLengthAndPads) {
  auto t = ClipTokenizer::load(kFixture);
  std::string text;
  for (int i = 0; i < 100; ++i) text += "dog ";
  const auto ids = t.encode(text);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), t.bos_id);
  EXPECT_EQ(ids[75], 1929);
  EXPECT_EQ(ids.back(), t.eos_id);
  t.model_max_length = 5;
  EXPECT_EQ(t.encode(text), (std::vector<int64_t>{t.bos_id, 1929, 1929, 1929, t.eos_id}));
  EXPECT_EQ(t.encode_padded(""), (std::vector<int64_t>{t.bos_id, t.eos_id, t.pad_id, t.pad_id, t.pad_id}));
  EXPECT_THROW(ClipTokenizer().encode("a"), Error);  // not loaded
}

// ---------------------------------------------------------------------------------------------------- errors

struct Files {
  std::string vocab = R"({"a": 0, "b": 1, "ab": 2, "c</w>": 3, "<|startoftext|>": 4, "<|endoftext|>": 5})";
  std::string merges = "#version: 0.2\na b\n";
  std::string config;  // none when empty
};

fs::path write(const std::string& name, const Files& f) {
  const fs::path dir = fs::temp_directory_path() / ("facet_test_clip_tokenizer_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "vocab.json") << f.vocab;
  std::ofstream(dir / "merges.txt") << f.merges;
  if (!f.config.empty()) std::ofstream(dir / "tokenizer_config.json") << f.config;
  return dir;
}

Files with_vocab(std::string text) {
  Files f;
  f.vocab = std::move(text);
  return f;
}
Files with_merges(std::string text) {
  Files f;
  f.merges = std::move(text);
  return f;
}
Files with_config(std::string text) {
  Files f;
  f.config = std::move(text);
  return f;
}

std::string load_error(const fs::path& path) {
  try {
    ClipTokenizer::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ClipTokenizer, BrokenFilesAreErrorsNamingTheFileAndLine) {
  const fs::path ok = write("ok", {});
  EXPECT_EQ(load_error(ok), "(no error)");
  EXPECT_EQ(ClipTokenizer::load(ok).tokenize("ab abc"), (std::vector<std::string>{"a", "b</w>", "ab", "c</w>"}));

  EXPECT_THAT(load_error(ok / "missing"), HasSubstr("ok/missing: no such file or folder"));
  {
    const fs::path dir = write("no_merges", {});
    fs::remove(dir / "merges.txt");
    EXPECT_THAT(load_error(dir), HasSubstr("no_merges/merges.txt: no such file"));
  }
  EXPECT_THAT(load_error(write("bad_json", with_vocab(R"({"a": 0,)"))), HasSubstr("bad_json/vocab.json: not valid JSON"));
  EXPECT_THAT(load_error(write("not_object", with_vocab("[1, 2]"))), HasSubstr("not_object/vocab.json: expected a JSON object"));
  EXPECT_THAT(load_error(write("dup_id", with_vocab(R"({"a": 0, "b": 0})"))),
              HasSubstr("dup_id/vocab.json: \"b\": 0 is not a free id"));
  EXPECT_THAT(load_error(write("three", with_merges("#version: 0.2\na b\n\na b c\n"))),
              HasSubstr("three/merges.txt:3: expected a merge, two tokens separated by a space, got \"\""));
  EXPECT_THAT(load_error(write("three2", with_merges("#version: 0.2\na b\na b c\n"))),
              HasSubstr("three2/merges.txt:3: expected a merge, two tokens separated by a space, got \"a b c\""));
  EXPECT_THAT(load_error(write("part", with_merges("\n#version: 0.2\na b\nzz b\n"))),
              HasSubstr("part/merges.txt:4: merge \"zz b\": \"zz\" is not in"));
  EXPECT_THAT(load_error(write("result", with_merges("#version: 0.2\nb a\n"))),
              HasSubstr("result/merges.txt:2: merge \"b a\": \"ba\" is not in"));
  EXPECT_THAT(load_error(write("no_bos", with_vocab(R"({"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3})"))),
              HasSubstr("no_bos/vocab.json: the bos token \"<|startoftext|>\" is not in"));
  EXPECT_THAT(load_error(write("no_eos", with_vocab(R"({"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3})"))),
              HasSubstr("no_eos/vocab.json: the eos token \"<|endoftext|>\" is not in"));
  EXPECT_THAT(load_error(write("bad_config", with_config("{"))), HasSubstr("bad_config/tokenizer_config.json: not valid JSON"));
  EXPECT_THAT(load_error(write("pad", with_config(R"({"pad_token": "!"})"))),
              HasSubstr("pad/tokenizer_config.json: the pad token \"!\" is not in"));
  EXPECT_THAT(load_error(write("length", with_config(R"({"model_max_length": 1000000000000000019884624838656})"))),
              HasSubstr("length/tokenizer_config.json: model_max_length"));
}

// tokenizer_config.json's tokens, as strings or AddedToken objects; the pad token is split out of text as the others.
TEST(ClipTokenizer, ConfigNamesTheSpecialTokens) {
  Files f;
  f.vocab = R"({"a": 0, "b": 1, "ab": 2, "c": 3, "c</w>": 4, "!": 5, "!</w>": 6, "<s>": 7, "</s>": 8})";
  f.config = R"({"model_max_length": 8, "bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>",
                 "unk_token": "</s>", "pad_token": "!"})";
  const auto t = ClipTokenizer::load(write("config", f));
  EXPECT_EQ(t.bos_id, 7);
  EXPECT_EQ(t.eos_id, 8);
  EXPECT_EQ(t.pad_id, 5);
  EXPECT_EQ(t.model_max_length, 8);
  EXPECT_EQ(t.encode("c!"), (std::vector<int64_t>{7, 4, 5, 8}));  // "!" is the pad token, whole
  // "ab" is one word: "a" + "b</w>", which no merge joins, and "b</w>" is not in this vocabulary: the unk token.
  EXPECT_EQ(t.encode_padded("ab"), (std::vector<int64_t>{7, 0, 8, 8, 5, 5, 5, 5}));
}

}  // namespace
}  // namespace facet::data::test_clip_tokenizer
