// What nearly every test file needs: scratch directories private to the test process, and the
// message of the facet::Error a call throws (errors are checked by their message).
#pragma once

#include "core/error.h"

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>

namespace facet::test_support {

// <tmp>/<prefix>_<name>_<pid>, removed first (a crashed run may have left it), not created: for
// runs and writers that make their own directory.
inline std::filesystem::path scratch_path(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / (prefix + "_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

// The same path, created empty.
inline std::filesystem::path scratch_dir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir = scratch_path(prefix, name);
  std::filesystem::create_directories(dir);
  return dir;
}

// What fn's facet::Error says, or "(no error)" when it throws none.
inline std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace facet::test_support
