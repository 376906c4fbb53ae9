// `facet inspect FILE|DIR|INDEX`: the tensors of a safetensors file or sharded checkpoint (name,
// dtype, shape, bytes), totals, and the metadata. Reads headers only; no tensor data is copied.
#include "core/safetensors.h"
#include "tools/cli/commands.h"

#include <fmt/format.h>

namespace facet::cli {

namespace {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

// Names and metadata may hold any UTF-8, newlines included: escape control bytes so that every
// tensor stays on one line of the table.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (byte < 0x20 || byte == 0x7F) out += fmt::format("\\x{:02x}", byte);
    else out += c;
  }
  return out;
}

// Columns count characters, not bytes (UTF-8 continuation bytes take no column).
size_t columns(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string pad(const std::string& s, size_t width) { return s + std::string(width - std::min(width, columns(s)), ' '); }

void inspect(const std::string& path) {
  struct Row {
    std::string name, dtype, shape, file;
    uint64_t bytes, numel;
  };
  std::vector<Row> rows;
  std::map<std::string, std::string> metadata;
  const auto files = safetensors::open_checkpoint(path);
  for (const auto& f : files) {
    for (const auto& [k, v] : f.metadata()) metadata[k] = v;
    for (const auto& e : f.entries()) {
      uint64_t numel = 1;  // cannot overflow: the header parser checked it
      for (int64_t d : e.shape) numel *= static_cast<uint64_t>(d);
      rows.push_back({printable(e.name), e.dtype, fmt::format("[{}]", fmt::join(e.shape, ", ")),
                      f.path().filename().string(), e.end - e.begin, numel});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.name < b.name; });
  size_t name_w = 6, dtype_w = 5, shape_w = 5;
  for (const auto& r : rows) {
    name_w = std::max(name_w, columns(r.name));
    dtype_w = std::max(dtype_w, r.dtype.size());
    shape_w = std::max(shape_w, r.shape.size());
  }
  const bool sharded = files.size() > 1;
  fmt::print("{}  {:<{}}  {:<{}}  {:>10}{}\n", pad("tensor", name_w), "dtype", dtype_w, "shape", shape_w, "size",
             sharded ? "  shard" : "");
  uint64_t bytes = 0, numel = 0;
  for (const auto& r : rows) {
    fmt::print("{}  {:<{}}  {:<{}}  {:>10}{}\n", pad(r.name, name_w), r.dtype, dtype_w, r.shape, shape_w,
               human_bytes(r.bytes), sharded ? "  " + r.file : "");
    bytes += r.bytes;
    numel += r.numel;
  }
  fmt::print("\n{} tensors, {} parameters, {} ({} bytes) in {} file(s)\n", rows.size(), numel,
             human_bytes(bytes), bytes, files.size());
  if (!metadata.empty()) {
    fmt::print("metadata:\n");
    for (const auto& [k, v] : metadata) fmt::print("  {}: {}\n", printable(k), printable(v));
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("inspect",
                                 "List the tensors and metadata of a safetensors file or sharded checkpoint");
  cmd->add_option("path", *path,
                  "A .safetensors file, a *.safetensors.index.json, or a directory holding one")
      ->required();
  cmd->callback([path] { inspect(*path); });
}

}  // namespace facet::cli
