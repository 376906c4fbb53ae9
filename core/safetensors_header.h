// The safetensors header: parsing and validation without LibTorch, so the fuzzer can exercise
// exactly what reads files from the internet. Follows the reference parser's rules (safetensors
// tensor.rs): u64 little-endian header size, a JSON object starting with '{', at most 100 MB,
// tensors tiling the byte buffer with no holes, overlaps or trailing bytes.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace facet::safetensors {

struct TensorEntry {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data buffer
  bool operator==(const TensorEntry&) const = default;
};

struct Header {
  std::vector<TensorEntry> tensors;  // sorted by offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header size: where the byte buffer begins in the file
  bool operator==(const Header&) const = default;
};

constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Bytes per element of a dtype name; throws facet::Error for unknown or sub-byte (F4, F6_*) dtypes.
size_t dtype_size(std::string_view dtype);

// The dtype's position in the reference's Dtype enum; its writer lays tensors out by this, descending.
int dtype_order(std::string_view dtype);

// Parses and validates the whole file's framing; every problem is a facet::Error "<origin>: ...".
Header parse_header(std::span<const uint8_t> file_bytes, std::string_view origin);

// The header bytes (size prefix + JSON padded with spaces to a multiple of 8) the reference writer
// produces for `tensors` (already in file order, offsets filled in) and `metadata`. Names and metadata
// must be valid UTF-8, else a facet::Error "<origin>: ...".
std::string serialize_header(const std::vector<TensorEntry>& tensors,
                             const std::map<std::string, std::string>& metadata, std::string_view origin);

// A sharded checkpoint's `*.safetensors.index.json` text: shard file name -> the tensor names its
// weight_map assigns to it. A shard must be a plain file name beside the index (no '/', not "..");
// every problem is a facet::Error "<origin>: ...".
std::map<std::string, std::set<std::string>> parse_index(std::string_view json_text, std::string_view origin);

}  // namespace facet::safetensors
