#include "train/progress.h"

#include "core/log.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace facet::train {

namespace {
std::string hms(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{:02d}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}
}  // namespace

Progress::Progress(int64_t total_steps, int64_t every, bool enabled)
    : total_(total_steps), every_(std::max<int64_t>(every, 1)), enabled_(enabled), terminal_(::isatty(2) == 1),
      start_(std::chrono::steady_clock::now()), window_start_(start_) {}

void Progress::update(int64_t step, int64_t epoch, double loss, double lr, int64_t samples) {
  if (!enabled_) return;
  if (first_step_ < 0) first_step_ = step - 1;
  const auto now = std::chrono::steady_clock::now();
  window_samples_ += samples;
  const double window = std::chrono::duration<double>(now - window_start_).count();
  if (window >= 1.0 || rate_ == 0) {
    if (window > 0) rate_ = static_cast<double>(window_samples_) / window;
    window_samples_ = 0;
    window_start_ = now;
  }
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double per_step = elapsed / static_cast<double>(std::max<int64_t>(step - first_step_, 1));
  const std::string line =
      fmt::format("step {}/{} | epoch {} | loss {:.4f} | lr {:.2e} | {:.1f} samples/s | ETA {}", step, total_, epoch,
                  loss, lr, rate_, hms(per_step * static_cast<double>(total_ - step)));
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    dirty_ = true;
  } else if (step % every_ == 0 || step == total_) {
    log::info("{}", line);
  }
}

void Progress::break_line() {
  if (dirty_) std::fputc('\n', stderr);
  dirty_ = false;
}

}  // namespace facet::train
