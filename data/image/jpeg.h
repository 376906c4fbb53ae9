// JPEG decoding with libjpeg-turbo straight into RGB (or grey) 8-bit pixels. OpenCV 4.6's imread
// decodes to RGB and swaps to BGR in a scalar loop — a fifth of a face loader's time — which a
// reader then swaps back; this does neither. A truncated file is an error, not a grey-filled image.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>

namespace facet::data::image {

// CV_8UC3 RGB, or CV_8UC1 for greyscale JPEGs. Errors name the file (missing, not a JPEG,
// truncated, corrupt).
cv::Mat decode_jpeg(const std::filesystem::path& path);

// Whether the file starts with the JPEG SOI marker.
bool is_jpeg(const std::filesystem::path& path);

}  // namespace facet::data::image
