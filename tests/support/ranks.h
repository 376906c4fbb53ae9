// Ranks forked from a test: each child gets torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so a Trainer or Evaluator built inside joins a real
// c10d/Gloo group, with the components the test executable registered.
#pragma once

#include "core/file_io.h"

#include <ATen/Parallel.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace facet::test_support {

// Runs body(rank) in `world` children. A child never returns into GoogleTest: it `_exit`s, with 1
// after writing its error to <dir>/rank<r>.err. Children still running after `deadline_s` are killed
// (a hang fails the test instead of blocking it). Returns each rank's exit code (128 + signal if
// killed). `port` is the rendezvous port (pick_free_port()).
inline std::vector<int> fork_ranks(int world, int port, const std::filesystem::path& dir,
                                   const std::function<void(int rank)>& body, double deadline_s = 90) {
  std::vector<pid_t> pids;
  std::fflush(nullptr);  // or the children flush the parent's pending output a second time
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        at::set_num_threads(1);  // libgomp is not fork-safe: the child never enters an OpenMP region
        const std::string r = std::to_string(rank), w = std::to_string(world);
        ::setenv("RANK", r.c_str(), 1);
        ::setenv("LOCAL_RANK", r.c_str(), 1);
        ::setenv("WORLD_SIZE", w.c_str(), 1);
        ::setenv("LOCAL_WORLD_SIZE", w.c_str(), 1);
        ::setenv("MASTER_ADDR", "127.0.0.1", 1);
        ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        body(rank);
      } catch (const std::exception& e) {
        write_file_atomic(dir / ("rank" + std::to_string(rank) + ".err"), e.what());
        code = 1;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes(world, -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(deadline_s);
  for (int done = 0; done < world;) {
    for (int rank = 0; rank < world; ++rank) {
      int status = 0;
      if (codes[rank] == -1 && ::waitpid(pids[rank], &status, WNOHANG) == pids[rank]) {
        codes[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ++done;
      }
    }
    if (std::chrono::steady_clock::now() > deadline)
      for (int rank = 0; rank < world; ++rank)
        if (codes[rank] == -1) ::kill(pids[rank], SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return codes;
}

// The errors the ranks wrote, for a failure message.
inline std::string rank_errors(const std::filesystem::path& dir, int world) {
  std::string all;
  for (int rank = 0; rank < world; ++rank)
    if (const auto p = dir / ("rank" + std::to_string(rank) + ".err"); std::filesystem::exists(p))
      all += "rank " + std::to_string(rank) + ": " + read_file(p) + "\n";
  return all;
}

}  // namespace facet::test_support
