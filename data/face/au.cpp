#include "data/face/au.h"

#include "core/error.h"
#include "core/text.h"

#include <algorithm>

namespace facet::data::face {

const std::array<std::vector<std::string>, 3>& bp4d_parts() {
  // face.md §A.4 (JAA-Net data/list, ME-GraphAU data/BP4D/list).
  static const std::array<std::vector<std::string>, 3> parts = {{
      {"F001", "F002", "F008", "F009", "F010", "F016", "F018", "F023", "M001", "M004", "M007", "M008", "M012", "M014"},
      {"F003", "F005", "F011", "F013", "F020", "F022", "M002", "M005", "M010", "M011", "M013", "M016", "M017", "M018"},
      {"F004", "F006", "F007", "F012", "F014", "F015", "F017", "F019", "F021", "M003", "M006", "M009", "M015"},
  }};
  return parts;
}

const std::array<std::vector<std::string>, 3>& disfa_parts() {
  // face.md §B.3; SN014, SN015, SN019, SN020, SN022 do not exist.
  static const std::array<std::vector<std::string>, 3> parts = {{
      {"SN001", "SN002", "SN009", "SN010", "SN016", "SN026", "SN027", "SN030", "SN032"},
      {"SN006", "SN011", "SN012", "SN013", "SN018", "SN021", "SN024", "SN028", "SN031"},
      {"SN003", "SN004", "SN005", "SN007", "SN008", "SN017", "SN023", "SN025", "SN029"},
  }};
  return parts;
}

int part_of(const std::array<std::vector<std::string>, 3>& parts, std::string_view subject) {
  for (size_t p = 0; p < parts.size(); ++p)
    if (std::find(parts[p].begin(), parts[p].end(), subject) != parts[p].end()) return static_cast<int>(p) + 1;
  return 0;
}

bool in_split(int part, int fold, std::string_view split) {
  if (fold < 1 || fold > 3) fail("fold: expected 1, 2 or 3, got {}", fold);
  if (split == "all") return part != 0;
  if (split == "test" || split == "val") return part == fold;
  if (split == "train") return part != 0 && part != fold;
  fail("unknown split \"{}\" (the AU datasets have train, val, test and all)", split);
}

std::vector<std::string> au_names(const int* aus, size_t count) {
  std::vector<std::string> names;
  for (size_t i = 0; i < count; ++i) names.push_back("AU" + std::to_string(aus[i]));
  return names;
}

namespace {

// Positives and known counts per AU, checked to be usable as rates.
std::pair<torch::Tensor, torch::Tensor> counts(const torch::Tensor& labels, const torch::Tensor& mask,
                                               const std::vector<std::string>& names) {
  if (labels.dim() != 2 || !labels.sizes().equals(mask.sizes()))
    fail("AU class weights: expected labels and mask of one shape [N, L], got {} and {}", labels.sizes(), mask.sizes());
  if (static_cast<size_t>(labels.size(1)) != names.size())
    fail("AU class weights: {} label columns but {} AU names", labels.size(1), names.size());
  const torch::Tensor known = (mask > 0).to(torch::kDouble);
  const torch::Tensor pos = ((labels > 0.5).to(torch::kDouble) * known).sum(0);
  const torch::Tensor n = known.sum(0);
  for (int64_t i = 0; i < labels.size(1); ++i) {
    if (n[i].item<double>() == 0) fail("AU class weights: {} has no known label in these frames", names[static_cast<size_t>(i)]);
    if (pos[i].item<double>() == 0)
      fail("AU class weights: {} never occurs in these {} frames, so its weight 1/rate is infinite", names[static_cast<size_t>(i)],
           n[i].item<double>());
  }
  return {pos, n};
}

}  // namespace

torch::Tensor au_class_weights(const torch::Tensor& labels, const torch::Tensor& mask, const std::vector<std::string>& names) {
  const auto [pos, n] = counts(labels, mask, names);
  const torch::Tensor inv = n / pos;  // 1 / occurrence rate
  return (inv * static_cast<double>(names.size()) / inv.sum()).to(torch::kFloat);
}

torch::Tensor au_pos_weights(const torch::Tensor& labels, const torch::Tensor& mask, const std::vector<std::string>& names) {
  const auto [pos, n] = counts(labels, mask, names);
  return ((n - pos) / pos).to(torch::kFloat);
}

}  // namespace facet::data::face
