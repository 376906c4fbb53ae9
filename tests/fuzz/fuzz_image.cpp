// libFuzzer target: any bytes given to read_image as a PNG or a JPEG (libjpeg-turbo straight to RGB
// for JPEG; for PNG our chunk parser, libdeflate and unfiltering, or OpenCV's imread for the kinds it
// leaves; then the [C, H, W] conversion) must decode or raise facet::Error — never crash, read out of
// bounds or trip UBSan. read_image picks the decoder by the file's content (JPEG's SOI marker, PNG's
// signature, else imread's signatures), so one extension reaches all of them.
#include "core/error.h"
#include "data/image/image_io.h"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("facet_fuzz_image_" + std::to_string(::getpid()) + ".png");
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    const auto image = facet::data::image::read_image(file);
    if (image.dim() != 3 || (image.size(0) != 1 && image.size(0) != 3)) __builtin_trap();
  } catch (const facet::Error&) {
  }
  return 0;
}
