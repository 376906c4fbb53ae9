// libFuzzer target: any text given to the CSV parser must parse or raise facet::Error — never
// crash, read out of bounds or trip UBSan — and a parsed table's rows must all be header-wide.
#include "core/csv.h"
#include "core/error.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto table = facet::CsvTable::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    for (size_t r = 0; r < table.rows(); ++r)
      for (size_t c = 0; c < table.header().size(); ++c) {
        (void)table.cell(r, c);
        for (auto read : {0, 1, 2}) try {
            if (read == 0) (void)table.integer(r, c);
            if (read == 1) (void)table.number(r, c, true);
            if (read == 2) (void)table.numbers(r, c);
          } catch (const facet::Error&) {
          }
      }
    if (!table.header().empty()) (void)table.find_column(table.header().front());
  } catch (const facet::Error&) {
  }
  return 0;
}
