// libFuzzer target: any bytes given to Facet's HDF5 pack reader as a pack (HDF5's own parser, then
// the pack's attributes, ids, fields and ragged offsets) must open and read or raise facet::Error —
// never crash or read out of bounds. The seed is tests/fixtures/pack/shapes.h5, written by
// `facet data pack` from the node below, so mutations get past the preprocessing-hash check.
// pack.cpp is instrumented; HDF5 and the rest of facet_data are not.
#include "core/config.h"
#include "core/error.h"
#include "data/pack.h"

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

// A damaged pack can make libhdf5 ask malloc for a terabyte (H5C_protect); glibc returns null and
// HDF5 reports an error, which is what this should see, not ASan's allocation-size-too-big abort.
// libhdf5 also leaks small blocks on some damaged files (see fuzz_pack.options): leaks are not checked.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1:detect_leaks=0"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("facet_fuzz_pack_" + std::to_string(::getpid()) + ".h5");
  static const facet::Config node = facet::Config::parse(
      "name: synthetic_shapes\ntrain_size: 4\nimage_size: 8\naugment_flip: false\npack: " + file.string() + "\n", "fuzz_pack");
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    const auto dataset = facet::data::open_dataset(node, "train");
    (void)dataset->label_names();
    for (int64_t i = 0; i < std::min<int64_t>(dataset->size(), 16); ++i) (void)dataset->get(i, 0);
  } catch (const facet::Error&) {
  }
  return 0;
}
