// Facial palsy severity images: the layout shared by the reader ("palsy") and the synthetic writer.
// ALGRNet's palsy data (face.md §6.1) were collected and graded by clinicians and are private, and
// their number of grades is not public, so this is a plain documented layout any graded set converts
// to (default: the six House-Brackmann grades I..VI as 0..5):
//   <root>/labels.csv                   header row with the columns image, grade, split (others, e.g.
//                                       subject, are allowed and ignored); image = path under
//                                       <root>/images/, grade = 0-based severity, split = train, val
//                                       or test
//   <root>/images/<image>               any format OpenCV decodes
//   <root>/landmarks.txt                optional: "<image> x1 y1 ... xK yK" per line, in that image's
//                                       pixels; or the landmarks.txt files `facet data align` writes
//                                       beside its crops under <root>/images/ ("<file> x1 y1 ..." with
//                                       the file name relative to its folder)
#pragma once

#include <opencv2/core.hpp>

#include <string_view>
#include <vector>

namespace facet::data::palsy {

inline constexpr std::string_view kLabels = "labels.csv";
inline constexpr std::string_view kImagesDir = "images";
inline constexpr std::string_view kLandmarks = "landmarks.txt";
inline constexpr int kHouseBrackmannGrades = 6;

// The synthetic writer's palsy: the affected half of a drawn face (side -1: the image's left, the
// subject's right; +1: the image's right) sags — mouth corner, brow and lower lid pulled down by
// smooth displacements proportional to `severity` (0 = normal .. 1 = total paralysis) and to the
// face's `half_width` (pixels). The image is warped in place and the landmarks moved with it.
void droop_face(cv::Mat& image, std::vector<cv::Point2f>& landmarks, int side, double severity, double half_width);

}  // namespace facet::data::palsy
