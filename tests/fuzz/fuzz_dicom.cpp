// libFuzzer target: any bytes given to Facet's DICOM reader (DCMTK's parser and decoders, the
// JPEG 2000 path through OpenJPEG, modality/window/MONOCHROME1 handling) must decode or raise
// facet::Error — never crash, read out of bounds or trip UBSan. DCMTK and OpenJPEG are Debian's
// (not instrumented): their crashes are caught, their coverage does not guide the search.
#include "core/error.h"
#include "data/image/dicom.h"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // DCMTK reads files; one scratch file per fuzzing process.
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("facet_fuzz_dicom_" + std::to_string(::getpid()) + ".dcm");
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  for (const bool window : {false, true}) {
    try {
      facet::data::image::DicomReadOptions options;
      options.apply_window = window;
      const auto frame = facet::data::image::read_dicom(file, options);
      if (frame.pixels.dim() != 3 || frame.pixels.size(1) != frame.rows || frame.pixels.size(2) != frame.columns)
        __builtin_trap();  // a decoded image must have the size it reports
      if (frame.frames > 1) {
        options.frame = frame.frames - 1;
        (void)facet::data::image::read_dicom(file, options);
      }
    } catch (const facet::Error&) {
    }
  }
  return 0;
}
