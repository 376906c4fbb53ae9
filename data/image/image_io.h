// Reading an image file of any kind the datasets ship — 8- or 16-bit PNG, JPEG, DICOM — into the
// Sample conventions of data/dataset.h: float32 [C, H, W] in the file's units, RGB order.
#pragma once

#include "data/image/dicom.h"

#include <torch/torch.h>

#include <filesystem>

namespace facet::data::image {

// PNG/JPEG/TIFF/BMP through OpenCV: grey stays 1 channel, colour becomes RGB (alpha dropped), 8-bit
// values 0..255, 16-bit 0..65535. DICOM (by extension .dcm/.dicom or the DICM magic) through
// read_dicom with `dicom`. Errors name the file: missing, empty, truncated or undecodable.
torch::Tensor read_image(const std::filesystem::path& path, const DicomReadOptions& dicom = {});

// Whether read_image treats `path` as DICOM.
bool is_dicom_path(const std::filesystem::path& path);

}  // namespace facet::data::image
