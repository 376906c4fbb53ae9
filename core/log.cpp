#include "core/log.h"

#include "core/error.h"

#include <fmt/chrono.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace facet::log {
namespace {

Level level_from_environment() {
  const char* env = std::getenv("FACET_LOG_LEVEL");
  if (!env || !*env) return Level::info;
  try {
    return parse_level(env);
  } catch (const Error&) {
    return Level::info;
  }
}

struct State {
  std::mutex mutex;
  Level level = level_from_environment();
  int rank = 0;
  int world_size = 1;
  bool all_ranks = std::getenv("FACET_LOG_ALL_RANKS") && std::string_view(std::getenv("FACET_LOG_ALL_RANKS")) == "1";
  std::FILE* file = nullptr;
};

State& state() {
  static State s;
  return s;
}

char letter(Level level) {
  switch (level) {
    case Level::debug: return 'D';
    case Level::info: return 'I';
    case Level::warn: return 'W';
    case Level::error: return 'E';
    case Level::off: break;
  }
  return '?';
}

}  // namespace

Level parse_level(std::string_view name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  fail("unknown log level \"{}\" (expected debug, info, warn, error or off)", name);
}

void set_level(Level level) {
  std::lock_guard lock(state().mutex);
  state().level = level;
}

Level level() { return state().level; }

void set_rank(int rank, int world_size, bool all_ranks) {
  std::lock_guard lock(state().mutex);
  state().rank = rank;
  state().world_size = world_size;
  state().all_ranks = state().all_ranks || all_ranks;
}

void open_file(const std::filesystem::path& path) {
  std::lock_guard lock(state().mutex);
  if (state().file) std::fclose(state().file);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  state().file = std::fopen(path.c_str(), "a");
  if (!state().file) fail("{}: cannot open log file for appending", path.string());
}

void close_file() {
  std::lock_guard lock(state().mutex);
  if (state().file) std::fclose(state().file);
  state().file = nullptr;
}

bool enabled(Level level) {
  const State& s = state();
  if (level < s.level || level == Level::off) return false;
  return s.rank == 0 || s.all_ranks || level >= Level::warn;
}

void write(Level level, std::string_view message) {
  State& s = state();
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::string rank = s.world_size > 1 ? fmt::format(" [rank {}]", s.rank) : std::string();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm local{};
  localtime_r(&seconds, &local);
  const std::string line =
      fmt::format("{:%Y-%m-%d %H:%M:%S}.{:03d} {}{} {}\n", local, ms, letter(level), rank, message);
  std::lock_guard lock(s.mutex);
  std::fputs(line.c_str(), stderr);
  if (s.file) {
    std::fputs(line.c_str(), s.file);
    std::fflush(s.file);
  }
}

}  // namespace facet::log
