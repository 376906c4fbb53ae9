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

void inspect(const std::string& path) {
  struct Row {
    std::string name, dtype, shape, file;
    uint64_t bytes, numel;
  };
  std::vector<Row> rows;
  std::map<std::string, std::string> metadata;
  const auto files = safetensors::resolve_files(path);
  for (const auto& file : files) {
    const safetensors::File f(file);
    for (const auto& [k, v] : f.metadata()) metadata[k] = v;
    for (const auto& e : f.entries()) {
      uint64_t numel = 1;
      for (int64_t d : e.shape) numel *= static_cast<uint64_t>(d);
      rows.push_back({e.name, e.dtype, fmt::format("[{}]", fmt::join(e.shape, ", ")), file.filename().string(),
                      e.end - e.begin, numel});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.name < b.name; });
  size_t name_w = 6, shape_w = 5;
  for (const auto& r : rows) {
    name_w = std::max(name_w, r.name.size());
    shape_w = std::max(shape_w, r.shape.size());
  }
  const bool sharded = files.size() > 1;
  fmt::print("{:<{}}  {:<6} {:<{}} {:>10}{}\n", "tensor", name_w, "dtype", "shape", shape_w, "size", sharded ? "  shard" : "");
  uint64_t bytes = 0, numel = 0;
  for (const auto& r : rows) {
    fmt::print("{:<{}}  {:<6} {:<{}} {:>10}{}\n", r.name, name_w, r.dtype, r.shape, shape_w, human_bytes(r.bytes),
               sharded ? "  " + r.file : "");
    bytes += r.bytes;
    numel += r.numel;
  }
  fmt::print("\n{} tensors, {} values, {} in {} file(s)\n", rows.size(), numel, human_bytes(bytes), files.size());
  if (!metadata.empty()) {
    fmt::print("metadata:\n");
    for (const auto& [k, v] : metadata) fmt::print("  {}: {}\n", k, v);
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("inspect", "List the tensors and metadata of a safetensors file or sharded checkpoint");
  cmd->add_option("path", *path, "A .safetensors file, a *.safetensors.index.json, or a directory holding one")
      ->required();
  cmd->callback([path] { inspect(*path); });
}

}  // namespace facet::cli
