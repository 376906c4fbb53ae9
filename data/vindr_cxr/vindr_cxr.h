// VinDr-CXR (Nguyen et al. 2022, PhysioNet release 1.0.0): the published layout, shared by the
// reader ("vindr_cxr") and the synthetic writer. Facts: ../shared/research/medical.md §A.
//   <root>/annotations/annotations_{train,test}.csv    image_id,[rad_id,]class_name,x_min,y_min,x_max,y_max
//                                                      (one row per reader and finding; "No finding"
//                                                      rows have empty coordinates)
//   <root>/annotations/image_labels_{train,test}.csv   image_id,[rad_id,] then 28 0/1 columns
//                                                      (train: one row per reader; test: consensus)
//   <root>/{train,test}/<image_id>.dicom               32-hex-digit ids; boxes are in the DICOM pixel grid
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace facet::data::vindr_cxr {

// The 22 local labels (findings with boxes), in file order (medical.md §A.3).
inline constexpr std::array<std::string_view, 22> kLocalLabels = {
    "Aortic enlargement", "Atelectasis",  "Calcification",     "Cardiomegaly",       "Clavicle fracture",
    "Consolidation",      "Edema",        "Emphysema",         "Enlarged PA",        "ILD",
    "Infiltration",       "Lung Opacity", "Lung cavity",       "Lung cyst",          "Mediastinal shift",
    "Nodule/Mass",        "Pleural effusion", "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
    "Rib fracture",       "Other lesion"};

// The 6 global labels (diagnoses, no boxes). The train file spells the fifth "Other diseases", the
// test file "Other disease"; Facet uses the train spelling.
inline constexpr std::array<std::string_view, 6> kGlobalLabels = {"COPD",         "Lung tumor",     "Pneumonia",
                                                                  "Tuberculosis", "Other diseases", "No finding"};
inline constexpr std::string_view kOtherDiseaseTestSpelling = "Other disease";
inline constexpr std::string_view kNoFinding = "No finding";
inline constexpr size_t kNumLabels = kLocalLabels.size() + kGlobalLabels.size();  // 28

// A stable share in [0, 1) of an image id (FNV-1a): the readers' validation split takes the ids below
// `val_fraction`, the same ones in every reader.
inline double id_fraction(const std::string& id) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  return static_cast<double>(h >> 11) / static_cast<double>(uint64_t{1} << 53);
}

}  // namespace facet::data::vindr_cxr
