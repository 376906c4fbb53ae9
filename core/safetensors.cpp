#include "core/safetensors.h"

#include "core/error.h"
#include "core/text.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <set>

namespace facet::safetensors {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string shape_text(c10::IntArrayRef shape) { return c10::str(shape); }

// The safetensors dtypes LibTorch has. F4 and F6_* pack values below a byte; torch has no 1:1 type.
// clang-format off
constexpr std::pair<std::string_view, torch::ScalarType> kTorchTypes[] = {
    {"F64", torch::kFloat64},     {"F32", torch::kFloat32},
    {"F16", torch::kFloat16},     {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},       {"I32", torch::kInt32},
    {"I16", torch::kInt16},       {"I8", torch::kInt8},
    {"U64", torch::kUInt64},      {"U32", torch::kUInt32},
    {"U16", torch::kUInt16},      {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},       {"C64", torch::kComplexFloat},
    {"F8_E4M3", torch::kFloat8_e4m3fn},         {"F8_E5M2", torch::kFloat8_e5m2},
    {"F8_E4M3FNUZ", torch::kFloat8_e4m3fnuz},   {"F8_E5M2FNUZ", torch::kFloat8_e5m2fnuz},
    {"F8_E8M0", torch::kFloat8_e8m0fnu},
};
// clang-format on

}  // namespace

torch::ScalarType to_torch(std::string_view dtype) {
  for (const auto& [name, type] : kTorchTypes)
    if (name == dtype) return type;
  fail("dtype {} has no LibTorch equivalent", dtype);
}

std::string from_torch(torch::ScalarType type) {
  for (const auto& [name, t] : kTorchTypes)
    if (t == type) return std::string(name);
  fail("tensors of type {} cannot be stored in safetensors", c10::toString(type));
}

// --- File ---------------------------------------------------------------------------------------
File::File(const fs::path& path) : map_(path), header_(parse_header(map_.bytes(), path.string())) {}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

const TensorEntry& File::entry(std::string_view name) const {
  for (const auto& t : header_.tensors)
    if (t.name == name) return t;
  fail("{}: no tensor named \"{}\"", path().string(), name);
}

torch::Tensor File::tensor(std::string_view name) const {
  const TensorEntry& e = entry(name);
  torch::ScalarType type;
  try {
    type = to_torch(e.dtype);
  } catch (const Error& err) {
    fail("{}: tensor \"{}\": {}", path().string(), name, err.what());
  }
  torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(type));
  if (e.end > e.begin)
    std::memcpy(t.data_ptr(), map_.bytes().data() + header_.data_start + e.begin, e.end - e.begin);
  return t;
}

torch::Tensor File::view(const TensorEntry& e) const {
  torch::ScalarType type;
  try {
    type = to_torch(e.dtype);
  } catch (const Error& err) {
    fail("{}: tensor \"{}\": {}", path().string(), e.name, err.what());
  }
  const uint8_t* data = map_.bytes().data() + header_.data_start + e.begin;
  if (e.end == e.begin || reinterpret_cast<uintptr_t>(data) % c10::elementSize(type) != 0) return tensor(e.name);
  // from_blob wants a mutable pointer; nothing writes through it (the pages are mapped read-only).
  return torch::from_blob(const_cast<uint8_t*>(data), e.shape, torch::TensorOptions().dtype(type));
}

void File::release(const TensorEntry& e) const { map_.release(header_.data_start + e.begin, e.end - e.begin); }

TensorMap File::load_all() const {
  TensorMap out;
  for (const auto& e : header_.tensors) out.emplace(e.name, tensor(e.name));
  return out;
}

// --- loading and saving ---------------------------------------------------------------------------
namespace {

bool is_index(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0;
}

// The file `path` names: itself, or the checkpoint file inside a directory.
fs::path resolve_target(const fs::path& path) {
  if (!fs::is_directory(path)) {
    if (!fs::exists(path)) fail("{}: no such file", path.string());
    return path;
  }
  for (const char* base : {"model", "diffusion_pytorch_model"})
    for (const char* suffix : {".safetensors", ".safetensors.index.json"})
      if (fs::exists(path / (std::string(base) + suffix))) return path / (std::string(base) + suffix);
  fail("{}: no model.safetensors[.index.json] or diffusion_pytorch_model.safetensors[.index.json] here",
       path.string());
}

// Shard file → the tensor names the index assigns to it.
std::map<fs::path, std::set<std::string>> read_index(const fs::path& index_path) {
  std::map<fs::path, std::set<std::string>> shards;
  for (auto& [file, names] : parse_index(read_file(index_path), index_path.string()))
    shards[index_path.parent_path() / file] = std::move(names);
  return shards;
}

}  // namespace

fs::path checkpoint_file(const fs::path& path) { return resolve_target(path); }
bool is_sharded_index(const fs::path& path) { return is_index(path); }

std::vector<File> open_checkpoint(const fs::path& path) {
  const fs::path target = resolve_target(path);
  std::vector<File> files;
  if (!is_index(target)) {
    files.emplace_back(target);
    return files;
  }
  for (const auto& [shard, assigned] : read_index(target)) {
    if (!fs::exists(shard)) fail("{}: shard {} is missing", target.string(), shard.string());
    const std::vector<std::string> held = files.emplace_back(shard).names();
    for (const auto& name : held)
      if (!assigned.count(name))
        fail("{}: holds \"{}\", which {} assigns elsewhere", shard.string(), name, target.string());
    const std::set<std::string> held_set(held.begin(), held.end());
    for (const auto& name : assigned)
      if (!held_set.count(name))
        fail("{}: lacks \"{}\", which {} says it holds", shard.string(), name, target.string());
  }
  return files;
}

TensorMap load(const fs::path& path) {
  TensorMap out;
  for (const File& file : open_checkpoint(path)) out.merge(file.load_all());
  return out;
}

void save(const fs::path& path, const TensorMap& tensors, const Metadata& metadata) {
  struct Item {
    const std::string* name;
    torch::Tensor data;  // contiguous, CPU
    std::string dtype;
  };
  std::vector<Item> items;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) fail("{}: tensor \"{}\" is undefined", path.string(), name);
    items.push_back({&name, t.detach().to(torch::kCPU).contiguous(), from_torch(t.scalar_type())});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    const int ra = dtype_order(a.dtype), rb = dtype_order(b.dtype);
    return ra != rb ? ra > rb : *a.name < *b.name;
  });
  std::vector<TensorEntry> entries;
  uint64_t offset = 0;
  for (const auto& item : items) {
    const uint64_t bytes = static_cast<uint64_t>(item.data.nbytes());
    entries.push_back({*item.name, item.dtype, item.data.sizes().vec(), offset, offset + bytes});
    offset += bytes;
  }
  const std::string header = serialize_header(entries, metadata, path.string());
  write_file_atomic(path, [&](int fd) {
    write_all(fd, header.data(), header.size(), path);
    for (const auto& item : items)
      write_all(fd, item.data.data_ptr(), static_cast<size_t>(item.data.nbytes()), path);
  });
}

void save_sharded(const fs::path& dir, const TensorMap& tensors, uint64_t max_shard_bytes,
                  std::string_view base) {
  std::vector<TensorMap> shards(1);
  uint64_t current = 0, total = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.nbytes());
    if (current > 0 && current + bytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().emplace(name, t);
    current += bytes;
    total += bytes;
  }
  fs::create_directories(dir);
  if (shards.size() == 1) {
    save(dir / (std::string(base) + ".safetensors"), shards[0]);
    return;
  }
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = fmt::format("{}-{:05d}-of-{:05d}.safetensors", base, i + 1, shards.size());
    save(dir / file, shards[i]);
    for (const auto& [name, t] : shards[i]) weight_map[name] = file;
  }
  // Written last, so a reader never sees an index whose shards are not all there.
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(dir / (std::string(base) + ".safetensors.index.json"), index.dump(2) + "\n");
}

// --- modules ------------------------------------------------------------------------------------
TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value();
  return out;
}

namespace {

std::regex compile(const std::string& pattern) {
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    fail("name map: \"{}\" is not a valid regular expression ({})", pattern, e.what());
  }
}

}  // namespace

std::optional<std::string> NameMap::apply(const std::string& name) const {
  for (const auto& pattern : ignore)
    if (std::regex_search(name, compile(pattern))) return std::nullopt;
  std::string out = name;
  for (const auto& [from, to] : prefixes)
    if (out.starts_with(from)) {
      out = to + out.substr(from.size());
      break;
    }
  for (const auto& [pattern, replacement] : regexes)
    out = std::regex_replace(out, compile(pattern), replacement);
  if (custom) return custom(out);
  return out;
}

std::string LoadReport::summary() const {
  std::string s = fmt::format("{} loaded", loaded.size());
  if (!missing.empty()) s += fmt::format("; {} missing: {}", missing.size(), join(missing));
  if (!unexpected.empty()) s += fmt::format("; {} unexpected: {}", unexpected.size(), join(unexpected));
  if (!mismatched.empty())
    s += fmt::format("; {} with other shapes: {}", mismatched.size(), join(mismatched, "; "));
  return s;
}

LoadReport load_into(torch::nn::Module& module, const TensorMap& tensors, const NameMap& names, bool strict,
                     std::string_view origin) {
  TensorMap targets = state_dict(module);
  TensorMap mapped;
  for (const auto& [name, t] : tensors)
    if (auto to = names.apply(name)) mapped[*to] = t;
  LoadReport report;
  for (const auto& [name, target] : targets) {
    auto it = mapped.find(name);
    if (it == mapped.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      report.mismatched.push_back(fmt::format("{}: module {}, file {}", name, shape_text(target.sizes()),
                                              shape_text(it->second.sizes())));
      continue;
    }
    report.loaded.push_back(name);
  }
  for (const auto& [name, t] : mapped)
    if (!targets.count(name)) report.unexpected.push_back(name);
  if (strict && !report.ok())
    fail("{}: does not match the model: {}", origin.empty() ? "state dict" : std::string(origin),
         report.summary());
  torch::NoGradGuard no_grad;
  for (const auto& name : report.loaded) targets.at(name).copy_(mapped.at(name));
  return report;
}

}  // namespace facet::safetensors
