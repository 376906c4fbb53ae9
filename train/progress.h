// The progress line: step, loss, lr, samples/s and ETA, redrawn in place on a terminal and printed
// as plain log lines every `every` steps otherwise (CI logs, files).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace facet::train {

class Progress {
 public:
  Progress(int64_t total_steps, int64_t every, bool enabled);
  // Reports the state after `step`; `samples` is the number of samples this step consumed (all ranks).
  void update(int64_t step, int64_t epoch, double loss, double lr, int64_t samples);
  // Ends a redrawn line before other output (evaluation tables, the final summary).
  void break_line();

 private:
  int64_t total_, every_;
  bool enabled_, terminal_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point start_, window_start_;
  int64_t window_samples_ = 0, first_step_ = -1;
  double rate_ = 0;
};

}  // namespace facet::train
