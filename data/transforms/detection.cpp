// Transforms of the mmdetection pipelines the lesion detectors were trained with: Albumentations'
// ShiftScaleRotate (SATr / A3D: shift 0.04, scale 0.2, rotate 15 degrees, bicubic, p 0.8) and
// mmdet's Pad(size_divisor=32). Both move images, masks (box_masks), boxes and RECIST points together
// (geometry.h), so every per-box field stays in step with its box.
#include "data/transform.h"
#include "data/transforms/geometry.h"

#include <opencv2/imgproc.hpp>

#include <cmath>
#include <map>
#include <numbers>

namespace facet::data {
namespace {

int read_interpolation(const Config& c, const std::string& fallback) {
  static const std::map<std::string, int> codes = {
      {"nearest", cv::INTER_NEAREST}, {"linear", cv::INTER_LINEAR}, {"cubic", cv::INTER_CUBIC}, {"area", cv::INTER_AREA}};
  const auto name = c.get<std::string>("interpolation", fallback);
  auto it = codes.find(name);
  if (it == codes.end()) fail("{}: {}: expected nearest, linear, cubic or area, got \"{}\"", c.where("interpolation"), c.full_key("interpolation"), name);
  return it->second;
}

int read_border(const Config& c, const std::string& fallback) {
  static const std::map<std::string, int> codes = {{"constant", cv::BORDER_CONSTANT},
                                                   {"reflect", cv::BORDER_REFLECT},
                                                   {"reflect_101", cv::BORDER_REFLECT_101},
                                                   {"replicate", cv::BORDER_REPLICATE}};
  const auto name = c.get<std::string>("border", fallback);
  auto it = codes.find(name);
  if (it == codes.end())
    fail("{}: {}: expected constant, reflect, reflect_101 or replicate, got \"{}\"", c.where("border"), c.full_key("border"), name);
  return it->second;
}

// Albumentations' ShiftScaleRotate: angle ~ U(-rotate, rotate) degrees, scale ~ U(1 - scale, 1 + scale),
// shifts ~ U(-shift, shift) of the width and height, about the image centre, with probability p:
// p' = [[a, b], [-b, a]] (p - c) + c + (dx W, dy H), a = s cos(angle), b = s sin(angle) (OpenCV's
// getRotationMatrix2D). Images: `interpolation` (cubic as in the SATr config) and `border`
// (reflect_101, Albumentations' default); masks: nearest, zero outside, so a mask never gains a
// mirrored copy its box does not have. Boxes: the bounding box of the mapped corners, as Albumentations.
class ShiftScaleRotate : public Transform {
 public:
  explicit ShiftScaleRotate(const Config& c)
      : fields_(SpatialFields::from(c)),
        shift_(c.get_in_range<double>("shift", 0.0625, Range::closed(0, 1))),
        scale_(c.get_in_range<double>("scale", 0.1, Range::closed_open(0, 1))),
        rotate_(c.get_in_range<double>("rotate", 45.0, Range::closed(0, 180))),
        p_(c.get_in_range<double>("p", 0.5, Range::closed(0, 1))),
        fill_(c.get_finite<double>("fill", 0.0)),
        interpolation_(read_interpolation(c, "linear")),
        border_(read_border(c, "reflect_101")) {}

  void apply(Sample& s, at::Generator& g) const override {
    // Every draw is made even when p skips the transform, so the stream does not depend on p.
    const double angle = uniform(g, -rotate_, rotate_) * std::numbers::pi / 180.0;
    const double scale = uniform(g, 1.0 - scale_, 1.0 + scale_);
    const double dx = uniform(g, -shift_, shift_), dy = uniform(g, -shift_, shift_);
    if (uniform(g, 0, 1) >= p_) return;
    const cv::Size size = spatial_size(s, fields_, "shift_scale_rotate");
    const double cx = size.width / 2.0, cy = size.height / 2.0;
    const double a = scale * std::cos(angle), b = scale * std::sin(angle);
    const cv::Matx23d A(a, b, cx - a * cx - b * cy + dx * size.width, -b, a, cy + b * cx - a * cy + dy * size.height);
    warp_fields(s, fields_, A, size, fill_, border_, interpolation_);
    map_geometry(s, A, size);
  }

 private:
  SpatialFields fields_;
  double shift_, scale_, rotate_, p_, fill_;
  int interpolation_, border_;
};

// mmdet's Pad: the spatial fields padded at the bottom and right to a multiple of `size_divisor`
// (images with `fill`, masks with 0); boxes and points do not move.
class Pad : public Transform {
 public:
  explicit Pad(const Config& c)
      : fields_(SpatialFields::from(c)),
        divisor_(c.get_in_range<int64_t>("size_divisor", 32, Range::at_least(1))),
        fill_(c.get_finite<double>("fill", 0.0)) {}

  void apply(Sample& s, at::Generator&) const override {
    const cv::Size in = spatial_size(s, fields_, "pad");
    auto up = [&](int v) { return static_cast<int>((v + divisor_ - 1) / divisor_ * divisor_); };
    const cv::Size out(up(in.width), up(in.height));
    if (out == in) return;
    crop_fields(s, fields_, cv::Rect(0, 0, out.width, out.height), fill_);
  }

 private:
  SpatialFields fields_;
  int64_t divisor_;
  double fill_;
};

FACET_REGISTER(transform_registry(), "shift_scale_rotate",
               "Albumentations' ShiftScaleRotate (shift, scale, rotate, p, interpolation, border); boxes, masks and "
               "RECIST points follow",
               [](const Config& c) { return std::make_shared<ShiftScaleRotate>(c); });
FACET_REGISTER(transform_registry(), "pad", "Pad bottom/right to a multiple of size_divisor (mmdet's Pad; fill)",
               [](const Config& c) { return std::make_shared<Pad>(c); });

}  // namespace
}  // namespace facet::data
