// The facet executable run from a test as a user runs it: with extra environment, its stderr and
// stdout in a log file, and its exit code (128 + the signal for a killed process).
#pragma once

#include "tests/support/paths.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace facet::test_support {

// Starts `facet ARGS...`; not waited for.
inline pid_t spawn_facet(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                         const std::filesystem::path& log) {
  const std::string facet = binary_path("tools/cli/facet");
  std::fflush(nullptr);  // nothing buffered is written twice by the child
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen(log.c_str(), "w", stderr) || ::dup2(::fileno(stderr), ::fileno(stdout)) < 0) ::_exit(126);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> all = {facet};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : all) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(facet.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

inline int wait_for_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline int run_facet(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                     const std::filesystem::path& log) {
  return wait_for_exit(spawn_facet(args, env, log));
}

}  // namespace facet::test_support
