// SentencePiece tokenizer parity with transformers' slow LlamaTokenizer (tools/golden/tokenizer_golden.py)
// and the chat templates' text, tokens and labels.
#include "core/error.h"
#include "core/file_io.h"
#include "data/dataset.h"
#include "data/text/chat_template.h"
#include "data/text/tokenizer.h"
#include "tests/support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace facet::test_tokenizer {

namespace fs = std::filesystem;
using namespace facet::data;
using namespace facet::data::text;

namespace {

fs::path dir() { return fs::path(facet::test_support::kSourceDir) / "tests/fixtures/llm/tokenizer"; }

TEST(Tokenizer, MatchesSlowLlamaTokenizerTokenForToken) {
  const auto tok = Tokenizer::load(dir());
  const auto golden = nlohmann::json::parse(read_file(dir() / "golden.json"));
  EXPECT_EQ(tok.vocab_size(), golden["vocab_size"].get<int64_t>());
  EXPECT_EQ(tok.bos_id, 1);
  EXPECT_EQ(tok.eos_id, 2);
  EXPECT_EQ(tok.unk_id, 0);
  int n = 0;
  for (const auto& c : golden["cases"]) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tok.encode(text), c["hf_ids"].get<std::vector<int64_t>>()) << "text: \"" << text << "\"";
    EXPECT_EQ(tok.encode_plain(text), c["sp_ids"].get<std::vector<int64_t>>()) << "text: \"" << text << "\"";
    EXPECT_EQ(tok.decode(c["hf_ids"].get<std::vector<int64_t>>()), c["decoded"].get<std::string>()) << "text: \"" << text << "\"";
    ++n;
  }
  EXPECT_EQ(n, 18);
}

TEST(Tokenizer, PadChoicesAndErrors) {
  auto tok = Tokenizer::load(dir() / "tokenizer.model");
  EXPECT_EQ(tok.pad_id, 0);  // no pad in the model: unk, as LLaVA trains
  tok.set_pad("eos");
  EXPECT_EQ(tok.pad_id, 2);
  tok.set_pad("17");
  EXPECT_EQ(tok.pad_id, 17);
  // A token string (LiteGPT sets pad_token = "$$"): the piece's id, or unk where the vocabulary has no
  // such piece. transformers 5's LlamaTokenizer on this file: pad_token "er" -> 260, "$$" -> 0.
  tok.set_pad("er");
  EXPECT_EQ(tok.pad_id, 260);
  EXPECT_EQ(tok.piece(260), "er");
  tok.set_pad("$$");
  EXPECT_EQ(tok.pad_id, 0);
  tok.set_pad("bos");  // a keyword, not the piece
  EXPECT_EQ(tok.pad_id, 1);
  EXPECT_THAT([&] { tok.set_pad("600"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("token id 600 is not below the vocabulary size 600")));
  EXPECT_THAT([&] { tok.set_pad(""); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("expected unk, eos, bos, a token id or a token string")));
  EXPECT_THAT([] { Tokenizer::load("/nonexistent/tokenizer.model"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no such file")));
  EXPECT_EQ(tok.encode("hi", true, true).back(), 2);
  EXPECT_EQ(tok.encode("a <s> b", false, false).size(), tok.encode_plain("a ").size() + 1 + tok.encode_plain(" b").size());
}

std::vector<Turn> chat(std::initializer_list<std::string> texts) {
  std::vector<Turn> turns;
  for (const auto& t : texts) turns.push_back({turns.size() % 2 == 0 ? Turn::Role::human : Turn::Role::gpt, t});
  return turns;
}

// The supervised tokens, decoded.
std::string answers(const Tokenizer& tok, const EncodedChat& e) {
  std::vector<int64_t> ids;
  for (auto l : e.labels)
    if (l != kIgnoreIndex) ids.push_back(l);
  return tok.decode(ids, false);
}

TEST(ChatTemplate, Llama2AsMetaWritesIt) {
  const auto tok = Tokenizer::load(dir());
  ChatOptions o;
  o.system = "Be brief.";
  const auto turns = chat({"<image>\nWhat is shown?", "A nodule.", "Where?", "The right upper lobe."});
  EXPECT_EQ(render(turns, o, false),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>\nWhat is shown? [/INST] A nodule. </s>"
            "<s>[INST] Where? [/INST] The right upper lobe. </s>");
  const auto e = encode_conversation(tok, turns, o);
  // The image marker is a placeholder; elsewhere the ids are the tokenizer's for the rendered text.
  ASSERT_EQ(std::count(e.input_ids.begin(), e.input_ids.end(), kImagePlaceholder), 1);
  o.image_token = "";
  EXPECT_EQ(encode_conversation(tok, turns, o).input_ids, tok.encode(render(turns, o, false), false, false));
  EXPECT_EQ(answers(tok, e), "A nodule.  The right upper lobe. ");  // each answer keeps its trailing space
  int64_t eos_supervised = 0;
  for (size_t i = 0; i < e.labels.size(); ++i) eos_supervised += e.labels[i] == tok.eos_id;
  EXPECT_EQ(eos_supervised, 2);
  EXPECT_EQ(render(chat({"Hi"}), o, true), "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
  EXPECT_EQ(encode_prompt(tok, chat({"Hi"}), o), tok.encode(render(chat({"Hi"}), o, true), false, false));
}

TEST(ChatTemplate, VicunaV1AsFastChatWritesIt) {
  const auto tok = Tokenizer::load(dir());
  ChatOptions o;
  o.style = "vicuna_v1";
  o.image_token = "";
  const auto turns = chat({"Which action units are active?", "AU6 and AU12.", "And the emotion?", "Happy."});
  EXPECT_EQ(render(turns, o, false), kVicunaSystem + " USER: Which action units are active? ASSISTANT: AU6 and AU12.</s>"
                                                     "USER: And the emotion? ASSISTANT: Happy.</s>");
  const auto e = encode_conversation(tok, turns, o);
  EXPECT_EQ(e.input_ids, tok.encode(render(turns, o, false), true, false));
  EXPECT_EQ(answers(tok, e), "AU6 and AU12. Happy.");
  EXPECT_EQ(e.labels.back(), tok.eos_id);
  EXPECT_EQ(render(chat({"Hi"}), o, true), kVicunaSystem + " USER: Hi ASSISTANT:");
  EXPECT_EQ(encode_prompt(tok, chat({"Hi"}), o), tok.encode(kVicunaSystem + " USER: Hi ASSISTANT:", true, false));
}

TEST(ChatTemplate, MiniGptV2AndTruncation) {
  const auto tok = Tokenizer::load(dir());
  ChatOptions o;
  o.style = "minigpt_v2";
  o.image_token = "<ImageHere>";
  const auto turns = chat({"<Img><ImageHere></Img> [vqa] Is there an effusion?", "no finding"});
  EXPECT_EQ(render(turns, o, false), "<s>[INST] <Img><ImageHere></Img> [vqa] Is there an effusion? [/INST] no finding\n");
  const auto e = encode_conversation(tok, turns, o);
  EXPECT_EQ(std::count(e.input_ids.begin(), e.input_ids.end(), kImagePlaceholder), 1);
  EXPECT_EQ(answers(tok, e), "no finding\n");
  EXPECT_EQ(e.input_ids.front(), tok.bos_id);
  // Truncation cuts ids and labels alike.
  o.max_length = 10;
  const auto cut = encode_conversation(tok, turns, o);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.input_ids.size(), 10U);
  EXPECT_EQ(cut.labels.size(), 10U);
  EXPECT_EQ(std::vector<int64_t>(e.input_ids.begin(), e.input_ids.begin() + 10), cut.input_ids);
  EXPECT_THAT([&] { encode_conversation(tok, chat({"q"}), o); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("must end with an answer")));
  o.style = "chatml";
  EXPECT_THAT([&] { render(turns, o, false); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("unknown style \"chatml\"")));
}

}  // namespace

}  // namespace facet::test_tokenizer
