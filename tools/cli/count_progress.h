// A progress line for work measured in items (files checked, samples packed): redrawn in place on
// a terminal, a plain line every 10 % otherwise (CI logs, files).
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace facet::cli {

class CountProgress {
 public:
  CountProgress(std::string what, int64_t total)
      : what_(std::move(what)), total_(total), terminal_(::isatty(STDERR_FILENO)), start_(clock::now()) {}

  void update(int64_t done) {
    const auto now = clock::now();
    const bool finished = done >= total_;
    if (terminal_) {
      if (!finished && now - last_ < std::chrono::milliseconds(200)) return;
    } else {
      const int64_t decile = total_ > 0 ? done * 10 / total_ : 10;
      if (decile == last_decile_ && !finished) return;
      last_decile_ = decile;
    }
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
    const std::string line = fmt::format("{} {}/{} ({:.0f}%)  {:.1f}/s  ETA {:.0f} s", what_, done, total_,
                                         total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0,
                                         rate, eta);
    if (terminal_) std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), finished ? "\n" : "");
    else std::fprintf(stderr, "%s\n", line.c_str());
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string what_;
  int64_t total_;
  bool terminal_;
  clock::time_point start_, last_{};
  int64_t last_decile_ = -1;
};

}  // namespace facet::cli
