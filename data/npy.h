// A small, bounds-checked reader of NumPy .npy files (format versions 1.0, 2.0 and 3.0), for the
// per-image feature vectors datasets ship as .npy (FABA-Instruct's 212-d landmark vectors,
// ../shared/research/face.md §1.3, §1.6). Only what those files use: little-endian float32 or
// float64 ('<f4', '<f8'; '|'/'=' byte order read as little-endian on this little-endian host),
// C order. Every error names the file. No torch here, so the fuzzer links it alone.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace facet::data {

struct NpyArray {
  std::vector<int64_t> shape;  // () for a scalar
  std::vector<double> values;  // C order, converted to double
  std::string dtype;           // "<f4" or "<f8" as the header says it
};

// Parses a whole file's bytes; `origin` names the file in errors.
NpyArray parse_npy(std::string_view bytes, const std::string& origin);
NpyArray read_npy(const std::filesystem::path& path);

// A little-endian float32 array ('<f4', C order, format 1.0, header padded to 64 bytes as numpy
// writes it), written atomically; `values` must hold the product of `shape` (for the synthetic
// FABA-Instruct's landmark vectors).
void write_npy(const std::filesystem::path& path, const std::vector<float>& values, const std::vector<int64_t>& shape);

}  // namespace facet::data
