// BP4D-Spontaneous (Zhang et al., Binghamton/Pittsburgh): the on-disk layout shared by the reader
// ("bp4d") and the synthetic writer. Facts: ../shared/research/face.md §A.
//   <root>/AUCoding/AU_OCC/<Subject>_<Task>.csv          header row; column "0" = frame number,
//                                                         columns "1", "2", ... = AU numbers; 0/1/9
//   <root>/<images_dir>/<Subject>/<Task>/<frame>.jpg      frame = CSV frame number, "0643" or "643"
//   <root>/<landmarks_dir>/<Subject>_<Task>.txt           optional, face_io.h's landmark format
#pragma once

#include <string_view>

namespace facet::data::bp4d {

inline constexpr std::string_view kLabelDir = "AUCoding/AU_OCC";
inline constexpr std::string_view kFrameColumn = "0";
// ME-GraphAU keeps its extracted frames in data/BP4D/img/<Subject>/<Task>/ (face.md §A.1); the
// original release's folder name is not in face.md, so it is an option with this default.
inline constexpr std::string_view kImagesDir = "img";
inline constexpr std::string_view kLandmarksDir = "landmarks";

}  // namespace facet::data::bp4d
