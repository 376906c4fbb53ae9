// DISFA (Mavadati et al., Univ. of Denver): the layout shared by the reader ("disfa") and the
// synthetic writer. Facts: ../shared/research/face.md §B.
//   <root>/ActionUnit_Labels/<SN>/<SN>_au<N>.txt     one line per frame: "frame,intensity", frame
//                                                     1-based, intensity 0..5
//   <root>/<images_dir>/<SN>/<t>.png                  left-camera frames extracted from
//                                                     Videos_LeftCamera, t = frame - 1 (0-based)
//   <root>/<landmarks_dir>/<SN>.txt                   optional, face_io.h's format, 1-based frames
#pragma once

#include <array>
#include <string_view>

namespace facet::data::disfa {

inline constexpr std::string_view kLabelDir = "ActionUnit_Labels";
// ME-GraphAU keeps extracted frames in data/DISFA/img/<SN>/<t>.png (face.md §B.1); the folder name is
// an option with this default.
inline constexpr std::string_view kImagesDir = "img";
inline constexpr std::string_view kLandmarksDir = "landmarks";
// The 12 AUs DISFA codes (face.md §B.1); the benchmark uses 8 of them (face/au.h kDisfaAus).
inline constexpr std::array<int, 12> kCodedAus = {1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26};

}  // namespace facet::data::disfa
