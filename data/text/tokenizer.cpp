#include "data/text/tokenizer.h"

#include "core/error.h"
#include "core/file_io.h"

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <charconv>

namespace facet::data::text {

namespace {

void check(const sentencepiece::util::Status& status, const std::string& what) {
  if (!status.ok()) throw Error(what + ": " + status.ToString());
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  const bool dir = std::filesystem::is_directory(path);
  const auto model = dir ? path / "tokenizer.model" : path;
  if (!std::filesystem::exists(model)) throw Error(model.string() + ": no such file (a SentencePiece tokenizer.model)");
  Tokenizer t;
  t.sp_ = std::make_shared<sentencepiece::SentencePieceProcessor>();
  check(t.sp_->Load(model.string()), model.string());
  t.bos_id = t.sp_->bos_id();
  t.eos_id = t.sp_->eos_id();
  t.unk_id = t.sp_->unk_id();
  t.pad_id = t.sp_->pad_id() >= 0 ? t.sp_->pad_id() : t.unk_id;
  const auto config = (dir ? path : path.parent_path()) / "tokenizer_config.json";
  if (std::filesystem::exists(config)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(config));
      if (j.contains("legacy") && j["legacy"].is_boolean() && !j["legacy"].get<bool>())
        throw Error("legacy: false (only the legacy SentencePiece behaviour is implemented)");
      if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) t.add_bos = j["add_bos_token"];
      if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) t.add_eos = j["add_eos_token"];
      if (j.contains("pad_token") && j["pad_token"].is_string()) t.pad_id = t.piece_to_id(j["pad_token"].get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(config.string() + ": " + e.what());
    } catch (const Error& e) {
      throw Error(config.string() + ": " + e.what());
    }
  }
  for (int64_t id : {t.unk_id, t.bos_id, t.eos_id})
    if (id >= 0) t.specials_.emplace_back(t.piece(id), id);
  std::sort(t.specials_.begin(), t.specials_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return t;
}

void Tokenizer::set_pad(std::string_view choice) {
  if (choice == "unk") pad_id = unk_id;
  else if (choice == "eos") pad_id = eos_id;
  else if (choice == "bos") pad_id = bos_id;
  else if (!choice.empty() && std::all_of(choice.begin(), choice.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(choice.data(), choice.data() + choice.size(), id);
    if (ec != std::errc() || end != choice.data() + choice.size() || id >= vocab_size())
      throw Error("tokenizer pad: token id " + std::string(choice) + " is not below the vocabulary size " + std::to_string(vocab_size()));
    pad_id = id;
  } else if (!choice.empty()) {
    // A token string, as transformers' `tokenizer.pad_token = "$$"` (LiteGPT / MiniGPT-v2): its piece's
    // id, or the unk id when the vocabulary has no such piece (what transformers resolves it to).
    pad_id = piece_to_id(choice);
  } else {
    throw Error("tokenizer pad: expected unk, eos, bos, a token id or a token string, got \"\"");
  }
}

std::vector<int64_t> Tokenizer::encode_plain(std::string_view text) const {
  std::vector<int> ids;
  check(sp_->Encode(text, &ids), "sentencepiece encode");
  return {ids.begin(), ids.end()};
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool bos, bool eos) const {
  std::vector<int64_t> out;
  if (bos) out.push_back(bos_id);
  // Split at the leftmost special-token string (longest first at a position), as transformers' trie.
  size_t start = 0;
  while (start <= text.size()) {
    size_t best = std::string_view::npos;
    const std::pair<std::string, int64_t>* which = nullptr;
    for (const auto& s : specials_) {
      const size_t at = text.find(s.first, start);
      if (at != std::string_view::npos && (at < best || (at == best && s.first.size() > which->first.size()))) {
        best = at;
        which = &s;
      }
    }
    const auto segment = text.substr(start, best == std::string_view::npos ? std::string_view::npos : best - start);
    if (!segment.empty()) {
      const auto ids = encode_plain(segment);
      out.insert(out.end(), ids.begin(), ids.end());
    }
    if (!which) break;
    out.push_back(which->second);
    start = best + which->first.size();
  }
  if (eos) out.push_back(eos_id);
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::vector<int> keep;
  keep.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;  // placeholders (images) and padding outside the vocabulary
    if (skip_special && sp_->IsControl(static_cast<int>(id))) continue;
    keep.push_back(static_cast<int>(id));
  }
  std::string text;
  check(sp_->Decode(keep, &text), "sentencepiece decode");
  return text;
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
std::string Tokenizer::piece(int64_t id) const { return sp_->IdToPiece(static_cast<int>(id)); }
int64_t Tokenizer::piece_to_id(std::string_view piece) const { return sp_->PieceToId(piece); }
bool Tokenizer::is_control(int64_t id) const { return sp_->IsControl(static_cast<int>(id)); }

}  // namespace facet::data::text
