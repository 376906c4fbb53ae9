// A multi-task face dataset ("face_tasks"): face images with any mix of expression, AU,
// attribute, age and head-pose labels, missing labels allowed per task, for multi-task face models
// (Q-Face, face.md §3). One layout to which the single-task benchmarks convert, so that one loader
// serves them all and several can be concatenated into one CSV:
//
//   <root>/<images_dir>/...        images (JPEG/PNG), any sub-folders
//   <root>/<split>.csv             one row per image (split = train, val, test, ...), columns by name:
//     image                        path relative to <root>/<images_dir>            (required)
//     expression                   class index 0..C-1; -1 or empty = unknown
//     au_<n>                       AU n occurrence 0/1; 9 (BP4D), -1 (ABAW) or empty = unknown
//     attr_<name>                  attribute 1 = present, 0 or -1 (CelebA's -1/1) = absent, empty = unknown
//     age                          years (float >= 0); empty = unknown
//     yaw, pitch, roll             degrees; each empty = unknown (all three columns or none)
//     landmarks                    optional: "x1, y1, ..., xK, yK" in one quoted field, pixels of the file
//
// Conversions (the label conventions of each benchmark's public release; not in face.md):
//   RAF-DB basic  expression = label - 1 (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
//                 6 Anger, 7 Neutral -> 0..6); the aligned 100x100 crops as images
//   BP4D          au_1 ... au_24 from the AU_OCC CSVs (9 kept: unknown); frames as images; the
//                 subject-exclusive folds (face.md §A.4) as the split files
//   CelebA        attr_<name> = list_attr_celeba.txt (-1/1) column by column; split from
//                 list_eval_partition.txt (0 train, 1 val, 2 test)
//   UTKFace       age from the file name <age>_<gender>_<race>_<date>.jpg; MORPH II its age column
//   300W-LP / AFLW2000  yaw, pitch, roll in degrees from the .mat pose parameters (Hopenet keeps
//                 |angle| <= 99 for AFLW2000 testing)
//
// Fields (data/dataset.h conventions): image float [3, H, W] 0..255; expression int64 [] (-1 =
// unknown); labels / label_mask float [N] (the AUs, in increasing AU number); attributes /
// attribute_mask float [A] (sorted by name unless `attributes` lists them); age / age_mask float [];
// pose / pose_mask float [3] (yaw, pitch, roll); landmarks float [K, 2]. A field exists when the
// CSV has its columns. Pose sign convention: a horizontal flip negates yaw and roll (Hopenet's
// flip augmentation; data/transforms random_hflip does it for the `pose` field).
#pragma once

#include <string_view>

namespace facet::data::face_tasks {

inline constexpr std::string_view kImagesDir = "images";
inline constexpr std::string_view kImageColumn = "image";
inline constexpr std::string_view kExpressionColumn = "expression";
inline constexpr std::string_view kAuPrefix = "au_";
inline constexpr std::string_view kAttributePrefix = "attr_";
inline constexpr std::string_view kAgeColumn = "age";
inline constexpr std::string_view kLandmarksColumn = "landmarks";
inline constexpr std::string_view kPoseColumns[3] = {"yaw", "pitch", "roll"};

// The synthetic writer's expression classes: RAF-DB's basic seven, 0-based.
inline constexpr std::string_view kRafExpressions[7] = {"Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"};

}  // namespace facet::data::face_tasks
