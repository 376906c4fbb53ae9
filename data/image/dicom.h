// DICOM images through DCMTK: any transfer syntax DCMTK decodes (uncompressed little/big endian,
// deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS), plus JPEG 2000 through OpenJPEG
// (data/image/jpeg2000.h), monochrome or colour, to the Sample conventions of data/dataset.h. A
// file meta without a Transfer Syntax UID is read with the encoding detected from the data set.
// Facts: ../shared/research/medical.md §A.4.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

namespace facet::data::image {

struct DicomReadOptions {
  // MONOCHROME1 stores dense tissue dark; flip it so every image has "bright = dense", as
  // MONOCHROME2 does (VinDr-CXR mixes both).
  bool invert_monochrome1 = true;
  // Map the modality values through the file's first Window Center/Width (DICOM PS3.3 C.11.2.1.2,
  // linear function) to [0, 1]. Files without a window keep modality values.
  bool apply_window = false;
  int64_t frame = 0;  // of a multi-frame file
};

struct DicomFrame {
  // float32 [C, H, W]: C = 1 (monochrome) or 3 (RGB). Monochrome values are modality values,
  // stored * RescaleSlope + RescaleIntercept (Hounsfield units for CT), unless `apply_window`.
  // Colour values are 0..2^bits - 1 per channel.
  torch::Tensor pixels;
  int64_t rows = 0, columns = 0, frames = 1;
  int bits_stored = 0;
  std::string photometric;     // as stored, e.g. "MONOCHROME1"
  std::string transfer_syntax;       // UID
  std::string transfer_syntax_name;  // e.g. "JPEG 2000 Image Compression (Lossless Only)"
  bool transfer_syntax_inferred = false;  // the file meta had none; detected from the data set
  double slope = 1, intercept = 0;
  std::optional<std::pair<double, double>> window;  // (center, width), first of the file's values
  bool inverted = false;   // MONOCHROME1 was flipped
  bool windowed = false;   // apply_window took effect
  // The smallest and largest of `pixels`, when the reader found them while converting (monochrome
  // frames DCMTK decodes): a min-max normalisation then needs no pass of its own.
  std::optional<std::pair<float, float>> range;
};

// Reads one frame. Errors (missing file, not DICOM, truncated pixel data, unsupported encoding,
// frame out of range) are facet::Error naming the file.
DicomFrame read_dicom(const std::filesystem::path& path, const DicomReadOptions& options = {});

// What write_dicom stores besides the pixels (a single-frame, uncompressed, explicit-VR little
// endian image, the layout of VinDr-CXR's files).
struct DicomWriteOptions {
  std::string photometric = "MONOCHROME2";  // or MONOCHROME1 (the caller stores inverted values)
  int bits_stored = 12;
  double slope = 1, intercept = 0;           // written only when not the identity
  std::optional<std::pair<double, double>> window;  // (center, width)
  std::string modality = "DX";
  std::string patient_id = "anonymous";
};

// `stored`: [H, W] integer values in 0 .. 2^bits_stored - 1 (any integer dtype). The file is
// written to a temporary name and renamed, so a crash never leaves a half-written image.
void write_dicom(const std::filesystem::path& path, const torch::Tensor& stored, const DicomWriteOptions& options = {});

// Whether `path` starts like a DICOM Part 10 file ("DICM" after the 128-byte preamble).
bool looks_like_dicom(const std::filesystem::path& path);

}  // namespace facet::data::image
