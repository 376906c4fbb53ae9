// libFuzzer target: any byte string given to the safetensors header parser must either parse or
// raise facet::Error — never crash, read out of bounds, or trip UBSan. A header that parses must
// describe a buffer the tensors tile exactly, and writing it back out must give the same header.
#include "core/error.h"
#include "core/safetensors_header.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace st = facet::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  st::Header header;
  try {
    header = st::parse_header({data, size}, "fuzz");
  } catch (const facet::Error&) {
    return 0;
  }
  uint64_t position = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != position || t.end < t.begin) __builtin_trap();
    position = t.end;
    // Throws (uncaught, so a finding) for a dtype the parser should have refused.
    (void)st::dtype_order(t.dtype);
  }
  if (header.data_start + position != size) __builtin_trap();

  // Round trip: the serialized header (in offset order, as parsed) with the same buffer re-parses
  // to the same tensors and metadata. Any facet::Error here escapes and is reported.
  std::string again = st::serialize_header(header.tensors, header.metadata, "fuzz");
  again.append(reinterpret_cast<const char*>(data) + header.data_start, size - header.data_start);
  st::Header reparsed =
      st::parse_header({reinterpret_cast<const uint8_t*>(again.data()), again.size()}, "fuzz");
  reparsed.data_start = header.data_start;
  if (!(reparsed == header)) __builtin_trap();
  return 0;
}
