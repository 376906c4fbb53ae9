// DeepLesion (Yan et al., NIH Clinical Center): the published layout, shared by the reader and the
// synthetic writer. Facts: ../shared/research/medical.md §B.
//   <root>/DL_info.csv                               one row per lesion
//   <root>/Images_png/<PPPPPP>_<SS>_<RR>/<NNN>.png   uint16 slices, HU = value - 32768, NNN 1-based
#pragma once

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

}  // namespace facet::data::deeplesion
