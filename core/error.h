// facet::Error — the one exception type of Facet. Messages carry their context (file, key, line)
// so that a user can act on them without a debugger; library code throws, only main() exits.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace facet {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws facet::Error with a fmt-formatted message: fail("{}: bad header", path).
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace facet
