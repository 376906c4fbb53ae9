// Small string utilities shared by the config and registry error messages.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facet {

// Levenshtein distance (insertions, deletions, substitutions each cost 1).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word` when it is close enough to be a plausible typo (distance at most
// max(2, |word| / 3)); nullopt otherwise. Ties go to the earliest candidate.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

// "a, b, c"
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

}  // namespace facet
