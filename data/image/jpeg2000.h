// JPEG 2000 code streams (ISO/IEC 15444-1) decoded with OpenJPEG. DCMTK's open-source build has no
// JPEG 2000 codec, yet DICOM transfer syntaxes 1.2.840.10008.1.2.4.90 (lossless) and .91 carry it,
// and VinDr-CXR ships such files; data/image/dicom.cpp hands their frames here. Torch-free, so the
// DICOM fuzzer (tests/fuzz/fuzz_dicom.cpp) can drive it directly.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace facet::data::image {

struct Jpeg2000Image {
  int64_t width = 0, height = 0;
  int precision = 0;       // bits per sample of the first component
  bool is_signed = false;  // of the first component
  // One row-major plane per component; OpenJPEG has already undone a reversible/irreversible
  // colour transform (DICOM's YBR_RCT / YBR_ICT), so three components are R, G, B.
  std::vector<std::vector<int32_t>> components;
};

// Decodes a raw code stream (FF 4F FF 51 ...) or a JP2 file. `expected_width/height` (0: any)
// are checked against the header before any sample is decoded, so a damaged header cannot make
// the decoder allocate for an image the DICOM file does not describe. Errors are facet::Error
// with `context` (the file) and OpenJPEG's own message.
Jpeg2000Image decode_jpeg2000(std::span<const uint8_t> bytes, const std::string& context, int64_t expected_width = 0,
                              int64_t expected_height = 0);

}  // namespace facet::data::image
