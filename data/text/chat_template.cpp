#include "data/text/chat_template.h"

#include "core/error.h"
#include "data/dataset.h"

#include <optional>

namespace facet::data::text {

const std::string kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.";

namespace {

std::string strip(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\n\r");
  return std::string(s.substr(b, e - b + 1));
}

std::string system_of(const ChatOptions& o) {
  if (o.system) return *o.system;
  return o.style == "vicuna_v1" ? kVicunaSystem : std::string();
}

void check_turns(const std::vector<Turn>& turns, bool for_generation, const ChatOptions& o) {
  if (o.style != "llama2" && o.style != "vicuna_v1" && o.style != "minigpt_v2")
    throw Error("chat template: unknown style \"" + o.style + "\" (llama2, vicuna_v1, minigpt_v2)");
  if (turns.empty()) throw Error("chat template: no turns");
  for (size_t i = 0; i < turns.size(); ++i)
    if ((turns[i].role == Turn::Role::human) != (i % 2 == 0))
      throw Error("chat template: turn " + std::to_string(i) + " should be " + (i % 2 == 0 ? "human" : "gpt") +
                  " (turns alternate, human first)");
  if (for_generation && turns.size() % 2 == 0) throw Error("chat template: a prompt must end with a human turn");
  if (!for_generation && turns.size() % 2 == 1) throw Error("chat template: a training conversation must end with an answer");
}

// Appends tokens with their labels; text segments are encoded on their own (dummy prefix included).
struct Builder {
  const Tokenizer& tok;
  const ChatOptions& o;
  EncodedChat out;

  void id(int64_t token, bool supervised) {
    out.input_ids.push_back(token);
    out.labels.push_back(supervised ? token : kIgnoreIndex);
  }
  // Special-token strings in `text` are split out (as the slow tokenizer does); image markers
  // become placeholders (each following chunk is its own segment, as LLaVA's tokenizer_image_token).
  void text(std::string_view t, bool supervised) {
    size_t start = 0;
    while (true) {
      const size_t at = o.image_token.empty() ? std::string_view::npos : t.find(o.image_token, start);
      const auto chunk = t.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start);
      if (!chunk.empty())
        for (int64_t token : tok.encode(chunk, false, false)) id(token, supervised);
      if (at == std::string_view::npos) break;
      id(kImagePlaceholder, false);
      start = at + o.image_token.size();
    }
  }
  // A segment following text directly after one space: the space becomes SentencePiece's dummy prefix.
  void plain(std::string_view t, bool supervised) {
    for (int64_t token : tok.encode(t, false, false)) id(token, supervised);
  }
};

std::string llama2_user(const std::string& user, const std::string& system, bool first) {
  const std::string sys = first && !system.empty() ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" : "";
  return "[INST] " + sys + strip(user) + " [/INST]";
}

EncodedChat build(const Tokenizer& tok, const std::vector<Turn>& turns, const ChatOptions& o, bool for_generation) {
  check_turns(turns, for_generation, o);
  Builder b{tok, o, {}};
  const std::string system = system_of(o);
  if (o.style == "llama2") {
    for (size_t i = 0; i < turns.size(); i += 2) {
      b.id(tok.bos_id, false);
      b.text(llama2_user(turns[i].text, system, i == 0), false);
      if (i + 1 < turns.size()) {
        b.plain(strip(turns[i + 1].text) + " ", true);
        b.id(tok.eos_id, true);
      }
    }
  } else if (o.style == "vicuna_v1") {
    b.id(tok.bos_id, false);
    for (size_t i = 0; i < turns.size(); i += 2) {
      b.text((i == 0 ? system + " " : std::string()) + "USER: " + turns[i].text + " ASSISTANT:", false);
      if (i + 1 < turns.size()) {
        b.plain(turns[i + 1].text, true);
        b.id(tok.eos_id, true);
      }
    }
  } else {  // minigpt_v2
    for (size_t i = 0; i < turns.size(); i += 2) {
      if (i == 0) b.id(tok.bos_id, false);
      b.text("[INST] " + turns[i].text + " [/INST]", false);
      if (i + 1 < turns.size()) b.plain(turns[i + 1].text + o.end_sym, true);
    }
  }
  if (o.max_length > 0 && static_cast<int64_t>(b.out.input_ids.size()) > o.max_length) {
    b.out.input_ids.resize(o.max_length);
    b.out.labels.resize(o.max_length);
    b.out.truncated = true;
  }
  return std::move(b.out);
}

}  // namespace

EncodedChat encode_conversation(const Tokenizer& tok, const std::vector<Turn>& turns, const ChatOptions& o) {
  return build(tok, turns, o, false);
}

std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::vector<Turn>& turns, const ChatOptions& o) {
  return build(tok, turns, o, true).input_ids;
}

std::string render(const std::vector<Turn>& turns, const ChatOptions& o, bool for_generation) {
  check_turns(turns, for_generation, o);
  const std::string system = system_of(o);
  std::string s;
  if (o.style == "llama2") {
    for (size_t i = 0; i < turns.size(); i += 2) {
      s += "<s>";  // (two appends: GCC 12 misreads "<s>" + string&& as an oversized memcpy)
      s += llama2_user(turns[i].text, system, i == 0);
      if (i + 1 < turns.size()) s += " " + strip(turns[i + 1].text) + " </s>";
    }
  } else if (o.style == "vicuna_v1") {
    s = system + " ";
    for (size_t i = 0; i < turns.size(); i += 2) {
      s += "USER: " + turns[i].text + " ASSISTANT:";
      if (i + 1 < turns.size()) s += " " + turns[i + 1].text + "</s>";
    }
  } else {
    for (size_t i = 0; i < turns.size(); i += 2) {
      s += (i == 0 ? "<s>" : "") + std::string("[INST] ") + turns[i].text + " [/INST]";
      if (i + 1 < turns.size()) s += " " + turns[i + 1].text + o.end_sym;
    }
  }
  return s;
}

}  // namespace facet::data::text
