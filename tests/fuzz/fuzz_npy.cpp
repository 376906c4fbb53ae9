// libFuzzer target: any bytes given to the .npy parser must parse or raise facet::Error — never
// crash, read out of bounds or trip UBSan — and a parsed array's values must match its shape.
#include "core/error.h"
#include "data/npy.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto a = facet::data::parse_npy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    size_t count = 1;
    for (int64_t d : a.shape) count *= static_cast<size_t>(d);
    if (count != a.values.size()) std::abort();
  } catch (const facet::Error&) {
  }
  return 0;
}
