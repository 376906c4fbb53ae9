// Instruction-tuning data in the LLaVA conversation format, as EmoLA's FABA-Instruct and Face-MLLM
// use it (../shared/research/face.md §1.6):
//   [{"id": "...", "image": "relative/path.jpg", "conversations": [
//       {"from": "human", "value": "<image>\nWhich action units ...?"},
//       {"from": "gpt", "value": "AU1, AU2 ..."}], ...extra fields (e.g. "landmark": "...")}]
// Validated when read: every error names the file, the record index and id, and the key.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace facet::data {

struct Turn {
  enum class Role { human, gpt };
  Role role;
  std::string text;
};

struct Conversation {
  std::string id;
  std::vector<std::filesystem::path> images;   // resolved against the image root; empty for text-only
  std::vector<Turn> turns;                     // human first, then alternating
  std::map<std::string, std::string> extra;    // other fields, as compact JSON (strings unquoted)
};

inline constexpr std::string_view kImageToken = "<image>";

// Reads `file`; images are resolved against `image_root` (default: the file's folder). With
// `check_images`, a missing image file is an error naming it.
std::vector<Conversation> read_instructions(const std::filesystem::path& file,
                                            const std::filesystem::path& image_root = {}, bool check_images = false);

}  // namespace facet::data
