// PNG decoding with libdeflate: the whole zlib stream inflated in one call (2-3x zlib's streaming
// inflate, which is half of a DeepLesion loader's time through OpenCV's libpng), then the rows
// unfiltered. Covers what datasets store: non-interlaced 8- or 16-bit grey, grey + alpha, RGB and
// RGBA (alpha dropped); anything else (palette, interlaced, 1/2/4-bit) is left to OpenCV. Every
// chunk's CRC and the stream's Adler-32 are checked; a damaged file is an error naming it.
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

namespace facet::data::image {

// Whether a file's bytes start with the PNG signature.
bool is_png(std::string_view bytes);

// CV_8UC1/CV_8UC3/CV_16UC1/CV_16UC3 in RGB order (16-bit in host byte order); nullopt for a valid PNG
// of a kind this decoder leaves to OpenCV. Errors name the file.
std::optional<cv::Mat> decode_png(const std::filesystem::path& path);
// The same, of the file's bytes already read (`path` names it in errors).
std::optional<cv::Mat> decode_png(const std::filesystem::path& path, std::string_view file);

}  // namespace facet::data::image
