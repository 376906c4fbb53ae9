// Logging: levels, timestamps, rank-aware (in a multi-process run only rank 0 prints, unless told
// otherwise; warnings and errors always print), to stderr and optionally to a run's log.txt.
#pragma once

#include <fmt/format.h>

#include <filesystem>
#include <string_view>

namespace facet::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// Parses "debug", "info", "warn"/"warning", "error", "off"; throws facet::Error otherwise.
Level parse_level(std::string_view name);

// Initial level: $FACET_LOG_LEVEL, else info.
void set_level(Level level);
Level level();

// Called once the process knows its place in a distributed run. Ranks other than 0 print only
// warnings and errors unless `all_ranks` (or $FACET_LOG_ALL_RANKS=1) is set.
void set_rank(int rank, int world_size, bool all_ranks = false);

// Tees every line that passes the level filter into `path` (appended, flushed per line).
void open_file(const std::filesystem::path& path);
void close_file();

void write(Level level, std::string_view message);
bool enabled(Level level);

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace facet::log
