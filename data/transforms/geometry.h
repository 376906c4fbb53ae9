// Moving a sample's geometry together: the image-like fields are resampled with OpenCV, one
// float32 plane at a time (so any channel count and 16-bit or HU values pass through unchanged),
// and landmarks and boxes follow the same map. Coordinates are continuous pixels with pixel i
// covering [i, i + 1) (see data/dataset.h), the convention of cv::resize and torchvision.
#pragma once

#include "data/dataset.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <string>
#include <vector>

namespace facet::data {

// Which fields are images (bilinear / area resampling) and which are label maps (nearest). A mask
// name may also be a ragged per-box field ([N, H, W] instance masks), resampled plane by plane.
struct SpatialFields {
  std::vector<std::string> images = {"image"};
  std::vector<std::string> masks = {"mask", "box_masks"};

  static SpatialFields from(const Config& transform);
};

// A uniform draw in [lo, hi) from a random transform's generator (so a seeded pipeline repeats).
double uniform(at::Generator& g, double lo, double hi);

// The numbers torch::randint(n, {1}, g) and torch::rand({1}, g) (float32) draw, without a tensor each:
// the transforms a loader runs on every sample draw a few, and a tensor op costs more than the draw.
int64_t random_below(at::Generator& g, int64_t n);
float random_unit(at::Generator& g);

// [H, W] of the sample's first present image field; fails naming the sample when there is none or
// when the spatial fields disagree.
cv::Size spatial_size(const Sample& s, const SpatialFields& fields, std::string_view transform);

// p' = A p for every landmark, box corner and per-box point set (box_recist [N, 4, 2]: DeepLesion's
// RECIST endpoints; A maps continuous input to output coordinates). Boxes become the bounding box of
// their mapped corners, clipped to `out`; boxes narrower or lower than `min_box_size` pixels
// afterwards are dropped with the same rows of every per-box field (box_*, see data/dataset.h), which
// must have one row per box.
void map_geometry(Sample& s, const cv::Matx23d& A, cv::Size out, double min_box_size = 1.0);

// Resamples the spatial fields with the affine map A (input -> output, continuous coordinates) to
// an image of size `out`; outside the input, images take `fill` (or OpenCV's `border` extrapolation,
// e.g. cv::BORDER_REFLECT_101 as Albumentations' ShiftScaleRotate) and masks 0. Images are
// interpolated with `interpolation` (cv::INTER_LINEAR, cv::INTER_CUBIC), masks with nearest.
void warp_fields(Sample& s, const SpatialFields& fields, const cv::Matx23d& A, cv::Size out, double fill,
                 int border = cv::BORDER_CONSTANT, int interpolation = cv::INTER_LINEAR);

// Per-box point sets moved by map_geometry: ragged fields [N, K, 2] (x, y).
inline const std::vector<std::string>& per_box_point_fields() {
  static const std::vector<std::string> names = {"box_recist"};
  return names;
}

// Resizes the spatial fields to `out` (area averaging when shrinking, bilinear when enlarging).
void resize_fields(Sample& s, const SpatialFields& fields, cv::Size out);

// Keeps the window [x, x + w) × [y, y + h) of the spatial fields; the window may extend past the
// image, where images take `fill` and masks 0.
void crop_fields(Sample& s, const SpatialFields& fields, cv::Rect window, double fill);

// Left-right mirror index permutations of the common face landmark schemes (0-based): 68-point
// iBUG/dlib, 66-point (DISFA: 68 without inner-mouth corners 61 and 65, 1-based) and 49-point
// (IntraFace/JAA-Net: 68 without the jaw and those corners).
std::vector<int64_t> face_landmark_mirror(int64_t num_points);

}  // namespace facet::data
