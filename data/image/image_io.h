// Reading an image file of any kind the datasets ship — 8- or 16-bit PNG, JPEG, DICOM — into the
// Sample conventions of data/dataset.h: float32 [C, H, W] in the file's units, RGB order.
#pragma once

#include "data/image/dicom.h"

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace facet::data::image {

// PNG/JPEG/TIFF/BMP through OpenCV: grey stays 1 channel, colour becomes RGB (alpha dropped), 8-bit
// values 0..255, 16-bit 0..65535. DICOM (by extension .dcm/.dicom or the DICM magic) through
// read_dicom with `dicom`. Errors name the file: missing, empty, truncated or undecodable.
torch::Tensor read_image(const std::filesystem::path& path, const DicomReadOptions& dicom = {});

// PNG/JPEG/TIFF/BMP as an OpenCV image in RGB (or grey) order, 8 or 16 bits, for readers that
// resize before converting to float. Same errors as read_image. min_side > 0: a JPEG may decode at
// 1/2, 1/4 or 1/8 scale with both sides still >= min_side (decode_jpeg); `reduction` gets the factor.
cv::Mat read_image_mat(const std::filesystem::path& path, int64_t min_side = 0, int* reduction = nullptr);
// The same, of the file's bytes already read (`path` names it in errors).
cv::Mat decode_image_mat(const std::filesystem::path& path, std::string_view file, int64_t min_side = 0,
                         int* reduction = nullptr);

// The whole file, read once. A file that cannot be read and does not exist is "<path>: no such <kind>
// file" (whether it exists is looked at only then); other failures say what the system said.
std::string read_image_file(const std::filesystem::path& path, std::string_view kind = "image");

// [C, H, W] float32 from an 8- or 16-bit OpenCV image (channels in the Mat's order).
torch::Tensor mat_to_chw(const cv::Mat& image);

// Whether read_image treats `path` as DICOM.
bool is_dicom_path(const std::filesystem::path& path);

}  // namespace facet::data::image
