// libFuzzer target: any byte string given to the safetensors header parser must either parse or
// raise facet::Error — never crash, read out of bounds, or trip UBSan.
#include "core/error.h"
#include "core/safetensors_header.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = facet::safetensors::parse_header({data, size}, "fuzz");
    // A header that parsed must describe bytes inside the input.
    for (const auto& t : header.tensors)
      if (header.data_start + t.end > size) __builtin_trap();
  } catch (const facet::Error&) {
  }
  return 0;
}
