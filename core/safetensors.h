// safetensors for LibTorch: memory-mapped reading, writing byte-for-byte like the Python
// `safetensors` library (so files round-trip with PyTorch and Hugging Face), sharded checkpoints
// through `*.safetensors.index.json`, and loading into a torch::nn::Module by name with a name map
// and a report of missing, unexpected and mis-shaped keys.
#pragma once

#include "core/file_io.h"
#include "core/safetensors_header.h"

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace facet::safetensors {

using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

torch::ScalarType to_torch(std::string_view dtype);  // throws for dtypes torch lacks
std::string from_torch(torch::ScalarType type);

// One safetensors file, memory-mapped; tensors are copied out on request (so they own their memory
// and are aligned whatever the file's layout).
class File {
 public:
  explicit File(const std::filesystem::path& path);
  const std::vector<TensorEntry>& entries() const { return header_.tensors; }
  const Metadata& metadata() const { return header_.metadata; }
  std::vector<std::string> names() const;
  const TensorEntry& entry(std::string_view name) const;
  torch::Tensor tensor(std::string_view name) const;
  TensorMap load_all() const;
  const std::filesystem::path& path() const { return map_.path(); }

  // Streaming (large checkpoints): `view` is a tensor over the mapped bytes themselves, no copy —
  // valid while this File lives, never to be written (the map is read-only). Its pages become
  // resident as they are read; `release` drops them again once the tensor has been copied where it
  // belongs, so a whole pass over a file larger than memory keeps about one tensor resident. A
  // tensor whose bytes are not aligned to its element size is copied instead.
  torch::Tensor view(const TensorEntry& entry) const;
  void release(const TensorEntry& entry) const;
  void advise_sequential() const { map_.advise_sequential(); }
  // The whole file (header + data), e.g. for hashing; data_start() is where the tensors' bytes begin.
  std::span<const uint8_t> bytes() const { return map_.bytes(); }
  uint64_t data_start() const { return header_.data_start; }

 private:
  MappedFile map_;
  Header header_;
};

// A `.safetensors` file, a `*.safetensors.index.json` sharded index, or a directory holding
// model.safetensors[.index.json] (or diffusers' diffusion_pytorch_model.*).
TensorMap load(const std::filesystem::path& path);

// The file `path` names: itself, or the checkpoint file inside a directory (model.safetensors,
// model.safetensors.index.json, diffusers' diffusion_pytorch_model.*); an error when there is none.
std::filesystem::path checkpoint_file(const std::filesystem::path& path);
bool is_sharded_index(const std::filesystem::path& path);  // *.index.json

// The file(s) `load` reads for `path`, opened (headers validated, no tensor data read): one file, or
// the index's shards, each checked to hold exactly the tensors the index assigns it.
std::vector<File> open_checkpoint(const std::filesystem::path& path);

// Writes atomically, laid out as the reference writer does (dtype descending, then name); the bytes
// equal the Python library's for the same tensors and at most one metadata key (it orders several
// keys by hash; ours are sorted). Empty `metadata` writes no __metadata__, like Python's None.
void save(const std::filesystem::path& path, const TensorMap& tensors,
          const Metadata& metadata = {{"format", "pt"}});

// Splits into shards of at most `max_shard_bytes` of tensor data (a larger tensor gets a shard of
// its own): `<base>-00001-of-0000N.safetensors` + `<base>.safetensors.index.json`; a single shard is
// written as plain `<base>.safetensors`, as transformers does.
void save_sharded(const std::filesystem::path& dir, const TensorMap& tensors, uint64_t max_shard_bytes,
                  std::string_view base = "model");

// --- modules --------------------------------------------------------------------------------------

// Parameters and buffers by dotted name.
TensorMap state_dict(const torch::nn::Module& module);

// Turns names in a file into names in the module, in order: ignore patterns (ECMAScript regexes
// searched in the name, e.g. R"(\.num_batches_tracked$)"; matching names are dropped), then the first
// matching prefix replacement, then every regex replacement, then `custom` (nullopt drops). A bad
// regex is a facet::Error.
struct NameMap {
  std::vector<std::string> ignore;
  std::vector<std::pair<std::string, std::string>> prefixes;  // {"model.", ""}
  std::vector<std::pair<std::string, std::string>> regexes;   // {R"(\.gamma$)", ".weight"}
  std::function<std::optional<std::string>(const std::string&)> custom;

  std::optional<std::string> apply(const std::string& name) const;
};

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file (after mapping), not in the module
  std::vector<std::string> mismatched;  // "name: module [..], file [..]"
  std::vector<std::string> loaded;
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;
};

// Copies the tensors into the module's parameters and buffers in place (copy_, converting dtype and
// device): optimiser state stays attached to the same tensors. In strict mode any missing,
// unexpected or mismatched key is a facet::Error naming `origin`; otherwise matching ones load.
LoadReport load_into(torch::nn::Module& module, const TensorMap& tensors, const NameMap& names = {},
                     bool strict = true, std::string_view origin = "");

}  // namespace facet::safetensors
