#include "data/instruct/instruct.h"

#include "core/error.h"
#include "core/file_io.h"

#include <nlohmann/json.hpp>

namespace facet::data {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

size_t count_tokens(std::string_view text, std::string_view token) {
  size_t n = 0;
  for (size_t at = text.find(token); at != std::string_view::npos; at = text.find(token, at + token.size())) ++n;
  return n;
}

}  // namespace

std::vector<Conversation> read_instructions(const fs::path& file, const fs::path& image_root, bool check_images) {
  json records;
  try {
    records = json::parse(read_file(file));
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON (byte {}): {}", file.string(), e.byte, e.what());
  }
  if (!records.is_array()) fail("{}: expected a JSON list of conversations, got a {}", file.string(), records.type_name());
  const fs::path root = image_root.empty() ? file.parent_path() : image_root;
  std::vector<Conversation> out;
  out.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    std::string where = fmt::format("{}: record {}", file.string(), i);
    if (!r.is_object()) fail("{}: expected an object, got a {}", where, r.type_name());
    Conversation c;
    const auto id = r.find("id");
    if (id == r.end() || !(id->is_string() || id->is_number_integer()))
      fail("{}: \"id\": expected a string or an integer", where);
    c.id = id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>());
    where += fmt::format(" (id {})", c.id);
    if (const auto image = r.find("image"); image != r.end() && !image->is_null()) {
      auto add = [&](const json& v) {
        if (!v.is_string() || v.get<std::string>().empty()) fail("{}: \"image\": expected a non-empty path", where);
        c.images.push_back(root / v.get<std::string>());
      };
      if (image->is_array())
        for (const auto& v : *image) add(v);
      else
        add(*image);
    }
    const auto turns = r.find("conversations");
    if (turns == r.end() || !turns->is_array() || turns->empty())
      fail("{}: \"conversations\": expected a non-empty list of turns", where);
    size_t image_tokens = 0;
    for (size_t t = 0; t < turns->size(); ++t) {
      const json& turn = (*turns)[t];
      const std::string at = fmt::format("{}: conversations[{}]", where, t);
      if (!turn.is_object()) fail("{}: expected an object with \"from\" and \"value\"", at);
      const auto from = turn.find("from"), value = turn.find("value");
      if (from == turn.end() || !from->is_string()) fail("{}: \"from\": expected \"human\" or \"gpt\"", at);
      if (value == turn.end() || !value->is_string()) fail("{}: \"value\": expected a string", at);
      const std::string who = from->get<std::string>();
      Turn::Role role;
      if (who == "human" || who == "user") role = Turn::Role::human;
      else if (who == "gpt" || who == "assistant") role = Turn::Role::gpt;
      else fail("{}: \"from\": expected \"human\" or \"gpt\", got \"{}\"", at, who);
      const Turn::Role expected = t % 2 == 0 ? Turn::Role::human : Turn::Role::gpt;
      if (role != expected)
        fail("{}: turns must alternate starting with human; this one is from \"{}\"", at, who);
      c.turns.push_back({role, value->get<std::string>()});
      image_tokens += count_tokens(c.turns.back().text, kImageToken);
    }
    if (image_tokens != c.images.size())
      fail("{}: {} image(s) but {} \"{}\" placeholder(s) in the turns", where, c.images.size(), image_tokens, kImageToken);
    if (check_images)
      for (const auto& p : c.images)
        if (!fs::exists(p)) fail("{}: image {} does not exist", where, p.string());
    for (const auto& [key, value] : r.items())
      if (key != "id" && key != "image" && key != "conversations")
        c.extra[key] = value.is_string() ? value.get<std::string>() : value.dump();
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace facet::data
