// libFuzzer target: any bytes given to Facet's NIfTI reader (header parsing in either byte order,
// NIfTI-1 and -2, gzip inflation, datatype conversion and scaling) must decode or raise facet::Error —
// never crash, read out of bounds or trip UBSan. A small cap on the voxel bytes keeps a header that
// declares a large volume over a gzip stream of zeros within the fuzzer's memory.
#include "core/error.h"
#include "data/image/nifti.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  facet::data::image::NiftiReadOptions options;
  options.max_bytes = 64 << 20;
  try {
    const auto v = facet::data::image::parse_nifti({data, size}, "fuzz.nii", options);
    if (v.data.dim() != 3 || v.data.numel() < 1) __builtin_trap();  // a volume has three positive sizes
  } catch (const facet::Error&) {
  }
  return 0;
}
