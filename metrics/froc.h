// The universal-lesion-detection FROC of DeepLesion (medical.md §B.7; 3DCE / MULAN / SATr
// evaluation code): detections of every image pooled and sorted by score; walking down the list, a
// detection whose best IoU with its image's lesions is < iou_threshold is a false positive, otherwise
// every lesion it overlaps >= iou_threshold that is not yet hit becomes a hit (a detection hitting only
// already-hit lesions counts as neither). Sensitivity (hits / lesions) at given false positives per
// image by linear interpolation of that curve (scipy's interp1d, i.e. np.interp: of several points at one
// FP rate, the last), the last sensitivity past the curve's end. IoU with the +1-pixel width convention of the reference code. Registered as metric `froc`
// (metrics/froc.cpp), with per-thickness and per-lesion-type views and COCO-style AP50.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace facet::metrics {

struct DetectionRecord {
  std::vector<std::array<double, 4>> gt;   // lesion boxes (x1, y1, x2, y2)
  std::vector<int64_t> gt_types;           // lesion type per box (-1 unknown); may be empty
  std::vector<std::array<double, 4>> det;  // detected boxes
  std::vector<double> scores;              // per detection
  double thickness = std::numeric_limits<double>::quiet_NaN();  // slice thickness (mm)
};

struct FrocCurve {
  std::vector<double> sensitivity, fp_per_image;  // after each detection, by decreasing score
  int64_t lesions = 0, images = 0;
};

// `type` >= 0: only lesions of that type count (hits and the total); false positives stay those of
// every image, so the curve is that type's sensitivity at the detector's overall FP rate.
FrocCurve froc_curve(const std::vector<DetectionRecord>& images, double iou_threshold = 0.5, bool plus_one = true,
                     int64_t type = -1);
std::vector<double> sensitivity_at(const FrocCurve& curve, const std::vector<double>& fp_per_image);
// COCO-style average precision at one IoU threshold (101 recall points; greedy matching of each
// detection, by decreasing score, to the unmatched lesion of highest IoU), IoU without the +1.
double average_precision(const std::vector<DetectionRecord>& images, double iou_threshold = 0.5);

}  // namespace facet::metrics
