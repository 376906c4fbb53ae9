// JPEG decoding with libjpeg-turbo straight into RGB (or grey) 8-bit pixels. OpenCV 4.6's imread
// decodes to RGB and swaps to BGR in a scalar loop — a fifth of a face loader's time — which a
// reader then swaps back; this does neither. A truncated file is an error, not a grey-filled image.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string_view>

namespace facet::data::image {

// CV_8UC3 RGB, or CV_8UC1 for greyscale JPEGs. Errors name the file (missing, not a JPEG,
// truncated, corrupt). With min_side > 0, decoded at 1/2, 1/4 or 1/8 of the size (libjpeg-turbo's
// scaled inverse DCT, several times faster than a full decode) when both sides stay >= min_side and
// are divisible by the factor, which goes to `reduction` (1: full size): for a caller that shrinks
// the image to min_side anyway. The rows are padded (not continuous: read them by the Mat's step),
// so that libjpeg-turbo writes them through the cache (jpeg.cpp).
cv::Mat decode_jpeg(const std::filesystem::path& path, int64_t min_side = 0, int* reduction = nullptr);
// The same, of the file's bytes already read (`path` names it in errors).
cv::Mat decode_jpeg(const std::filesystem::path& path, std::string_view file, int64_t min_side = 0,
                    int* reduction = nullptr);

}  // namespace facet::data::image
