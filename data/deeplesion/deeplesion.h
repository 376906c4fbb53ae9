// DeepLesion (Yan et al., NIH Clinical Center): the published layout, shared by the reader and the
// synthetic writer. Facts: ../shared/research/medical.md §B.
//   <root>/DL_info.csv                               one row per lesion
//   <root>/Images_png/<PPPPPP>_<SS>_<RR>/<NNN>.png   uint16 slices, HU = value - 32768, NNN 1-based
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <string_view>

namespace facet::data::deeplesion {

inline constexpr std::array<std::string_view, 18> kColumns = {
    "File_name",         "Patient_index",  "Study_index",         "Series_ID",
    "Key_slice_index",   "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
    "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy", "Slice_range",
    "Spacing_mm_px_",    "Image_size",     "DICOM_windows",       "Patient_gender",
    "Patient_age",       "Train_Val_Test"};

// Coarse_lesion_type 1..8 (−1: not typed, all of the training split).
inline constexpr std::array<std::string_view, 8> kLesionTypes = {"bone",   "abdomen", "mediastinum", "liver",
                                                                 "lung",   "kidney",  "soft tissue", "pelvis"};

inline constexpr int kHuOffset = 32768;  // stored value − 32768 = Hounsfield units

// The pseudo-mask of one lesion as the SATr/A3D mask generator (deeplesion/dataset/mask_generateor.py,
// medical.md §B.8) makes it: the key slice windowed to [-1024, 2050] HU -> [0, 255] - 50 and cast to
// 8 bits the way numpy's astype(uint8) does (negative values wrap: air becomes 206), as three
// channels; GrabCut (3 iterations, initialised with a mask) where the box is "probably foreground"
// and the RECIST quadrilateral (long-axis end, short-axis end, other long-axis end, other short-axis
// end) "foreground", polygon vertices truncated to integers; the result is 1 on (probable)
// foreground. `key` holds the stored values (HU + 32768) as float32; `box` and `recist` are the CSV's
// values minus 1 (0-based pixels, as the generator shifts them). When GrabCut cannot model one side
// (no background pixel at all), the initial marks are returned.
cv::Mat grabcut_mask(const cv::Mat& key, const std::array<double, 4>& box, const std::array<double, 8>& recist);

}  // namespace facet::data::deeplesion
