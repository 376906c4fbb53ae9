// libFuzzer target: any text given to Facet's YAML config loader must parse or raise facet::Error —
// never crash, recurse without bound, allocate without bound (aliases of aliases) or trip UBSan —
// and a parsed config must dump to YAML that reloads to the same dump.
#include "core/config.h"
#include "core/error.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  facet::Config config;
  try {
    config = facet::Config::parse(text, "fuzz.yaml");
  } catch (const facet::Error&) {
    return 0;
  }
  // Typed reads of every top-level key: an error is fine, a crash is not.
  for (const auto& key : config.keys()) {
    try {
      (void)config.get_finite<double>(key);
    } catch (const facet::Error&) {
    }
    try {
      (void)config.get<std::vector<std::string>>(key);
    } catch (const facet::Error&) {
    }
    try {
      (void)config.at(key).dump_inline();
    } catch (const facet::Error&) {
    }
  }
  const std::string dumped = config.dump();
  std::string again;
  try {
    again = facet::Config::parse(dumped, "dumped.yaml").dump();
  } catch (const facet::Error& e) {
    __builtin_trap();  // a dump that does not reload
  }
  if (again != dumped) __builtin_trap();
  return 0;
}
