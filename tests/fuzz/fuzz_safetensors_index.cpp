// libFuzzer target: any text given as a sharded checkpoint's *.safetensors.index.json must parse or
// raise facet::Error, and every shard it names must be a plain file name beside the index.
#include "core/error.h"
#include "core/safetensors_header.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto shards =
        facet::safetensors::parse_index(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.index.json");
    for (const auto& [file, names] : shards)
      if (file.empty() || file == ".." || file.find('/') != std::string::npos) __builtin_trap();
  } catch (const facet::Error&) {
  }
  return 0;
}
