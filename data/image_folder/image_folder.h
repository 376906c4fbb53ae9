// The ImageFolder layout of torchvision (and of the ABAW4 LSD challenge data, face.md §4.5): one
// folder per split, one sub-folder per class, images inside; class indices are the sorted folder
// names. Shared by the reader ("image_folder") and the synthetic LSD writer ("lsd").
//   <root>/<split>/<class>/<image>.{jpg,jpeg,png,ppm,bmp,pgm,tif,tiff,webp}
#pragma once

#include <array>
#include <filesystem>
#include <string_view>

namespace facet::data::image_folder {

// torchvision's IMG_EXTENSIONS, compared case-insensitively.
inline constexpr std::array<std::string_view, 9> kExtensions = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                                                ".pgm", ".tif",  ".tiff", ".webp"};

// Whether `path` has one of kExtensions (any case).
bool has_image_extension(const std::filesystem::path& path);

// The 6 LSD expressions as the synthetic writer names its folders (alphabetical = class order).
inline constexpr std::array<std::string_view, 6> kLsdClasses = {"anger", "disgust", "fear", "happiness", "sadness", "surprise"};

}  // namespace facet::data::image_folder
