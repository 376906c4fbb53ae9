// ABAW4 multi-task learning (MTL) challenge data, s-Aff-Wild2 (Kollias, ECCV 2022 workshops): the
// on-disk layout shared by the reader ("abaw_mtl") and the synthetic writer ("abaw"). Facts:
// ../shared/research/face.md §4.3 (the layout EMMA's dataset/EmotionDataset.py reads).
//   <root>/training_set_annotations.txt     one header line, then per frame
//   <root>/validation_set_annotations.txt   relative_image_path,valence,arousal,expression,AU1,...,AU12
//   <root>/cropped_aligned/<video>/<frame>.jpg   the 112 x 112 aligned face crops
// Missing annotations: valence/arousal -5, expression -1, AU -1 (per frame and task).
#pragma once

#include <array>
#include <string_view>

namespace facet::data::abaw {

inline constexpr std::string_view kTrainFile = "training_set_annotations.txt";
inline constexpr std::string_view kValFile = "validation_set_annotations.txt";
inline constexpr std::string_view kImagesDir = "cropped_aligned";
// What the writer puts on the first line; the reader skips that line whatever it holds.
inline constexpr std::string_view kHeader = "image,valence,arousal,expression,aus";

// Label order of the annotation files (face.md §4.3).
inline constexpr std::array<int, 12> kAus = {1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26};
inline constexpr std::array<std::string_view, 8> kExpressions = {"Neutral", "Anger",   "Disgust",  "Fear",
                                                                 "Happiness", "Sadness", "Surprise", "Other"};

inline constexpr double kMissingVa = -5;
inline constexpr int kMissingExpression = -1;
inline constexpr int kMissingAu = -1;

}  // namespace facet::data::abaw
