// Geometric transforms: every one moves the image-like fields, the landmarks and the boxes
// together (see geometry.h), so a detection or landmark target always matches its image.
#include "data/batch_slots.h"
#include "data/image/mirror.h"
#include "data/pooled_memory.h"
#include "data/transform.h"
#include "data/transforms/geometry.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace facet::data {
namespace {

// `size: 224` or `size: [H, W]`.
cv::Size read_size(const Config& c, const std::string& key) {
  const Config node = c.at(key);
  std::vector<int64_t> hw = node.is_list() ? c.get<std::vector<int64_t>>(key)
                                           : std::vector<int64_t>(2, c.get<int64_t>(key));
  if (hw.size() != 2 || hw[0] <= 0 || hw[1] <= 0)
    fail("{}: {}.{}: expected a positive size or [height, width]", c.where(key), c.prefix(), key);
  return cv::Size(static_cast<int>(hw[1]), static_cast<int>(hw[0]));
}

// Resize to a fixed size, or (max_size) so that the longer side is at most max_size.
class Resize : public Transform {
 public:
  explicit Resize(const Config& c) : fields_(SpatialFields::from(c)) {
    if (c.has("size")) size_ = read_size(c, "size");
    max_size_ = c.get<int64_t>("max_size", 0);
    if (size_.empty() == (max_size_ <= 0))
      fail("{}: {}: give exactly one of size and max_size", c.where(), c.prefix());
  }
  void apply(Sample& s, at::Generator&) const override {
    const cv::Size in = spatial_size(s, fields_, "resize");
    cv::Size out = size_;
    if (max_size_ > 0) {
      const double f = std::min(1.0, static_cast<double>(max_size_) / std::max(in.width, in.height));
      out = cv::Size(std::max(1, static_cast<int>(std::lround(in.width * f))),
                     std::max(1, static_cast<int>(std::lround(in.height * f))));
    }
    if (out == in) return;
    resize_fields(s, fields_, out);
    const double sx = static_cast<double>(out.width) / in.width, sy = static_cast<double>(out.height) / in.height;
    map_geometry(s, cv::Matx23d(sx, 0, 0, 0, sy, 0), out);
  }

 private:
  SpatialFields fields_;
  cv::Size size_;
  int64_t max_size_ = 0;
};

// A crop of `size`: centred, or at a uniformly random offset (`random: true`). With `padding`, the
// image is first padded by that many pixels on every side (filled with `fill`).
class Crop : public Transform {
 public:
  Crop(const Config& c, bool random)
      : fields_(SpatialFields::from(c)),
        size_(read_size(c, "size")),
        padding_(c.get<int>("padding", 0)),
        fill_(c.get<double>("fill", 0.0)),
        random_(random) {}
  void apply(Sample& s, at::Generator& g) const override {
    const cv::Size in = spatial_size(s, fields_, name());
    if (in.width + 2 * padding_ < size_.width || in.height + 2 * padding_ < size_.height)
      fail("{}: {}: the crop {}x{} is larger than the image {}x{} (+ padding {})", s.id, name(), size_.height,
           size_.width, in.height, in.width, padding_);
    const cv::Rect window = draw(in, g);
    crop_fields(s, fields_, window, fill_);
    map_geometry(s, cv::Matx23d(1, 0, -window.x, 0, 1, -window.y), size_);
  }
  std::optional<cv::Rect> image_window(cv::Size size, at::Generator& g) const override {
    const bool crops_image = std::find(fields_.images.begin(), fields_.images.end(), "image") != fields_.images.end();
    if (padding_ != 0 || !crops_image || size.width < size_.width || size.height < size_.height) return std::nullopt;
    return draw(size, g);
  }
  // Without padding the window lies inside the image: a view, whatever the pixel type.
  EightBit eight_bit_image() const override { return padding_ == 0 ? EightBit::keeps : EightBit::refuses; }

 private:
  const char* name() const { return random_ ? "random_crop" : "center_crop"; }
  // The window in the unpadded image's coordinates; offsets drawn as integers in [0, free], like
  // torchvision's RandomCrop.
  cv::Rect draw(cv::Size in, at::Generator& g) const {
    const int free_x = in.width + 2 * padding_ - size_.width, free_y = in.height + 2 * padding_ - size_.height;
    const int dx = random_ ? static_cast<int>(random_below(g, free_x + 1)) : free_x / 2;
    const int dy = random_ ? static_cast<int>(random_below(g, free_y + 1)) : free_y / 2;
    return cv::Rect(dx - padding_, dy - padding_, size_.width, size_.height);
  }

  SpatialFields fields_;
  cv::Size size_;
  int padding_;
  double fill_;
  bool random_;
};

// Each row of a contiguous tensor reversed in place, by element bits (any dtype of that width).
template <typename Bits>
void reverse_rows(torch::Tensor& x) {
  const int64_t width = x.size(-1), rows = width == 0 ? 0 : x.numel() / width;
  Bits* data = static_cast<Bits*>(x.data_ptr());
  for (int64_t r = 0; r < rows; ++r) std::reverse(data + r * width, data + (r + 1) * width);
}

// Whether x is a non-empty 8-bit [C, H, W] view of interleaved pixels (a decoded frame, or a crop of one).
bool interleaved_bytes(const torch::Tensor& x) {
  return x.is_cpu() && x.scalar_type() == torch::kUInt8 && x.dim() == 3 && x.numel() > 0 && x.stride(0) == 1 &&
         x.stride(2) == x.size(0) && x.stride(1) >= x.size(2) * x.size(0);
}

// Field `name`, x, mirrored along its last axis. The sample's row of the batch (a transform before
// wrote it there: data/batch_slots.h) in place, so it stays the batch's row and collate copies
// nothing; another contiguous one (a CT stack of several MB) into pooled memory
// (data/pooled_memory.h); an 8-bit frame's interleaved view into interleaved pixels, as flip keeps
// the layout (image/mirror.h).
torch::Tensor flipped(const std::string& name, torch::Tensor x) {
  if (interleaved_bytes(x)) {
    const int64_t channels = x.size(0), rows = x.size(1), cols = x.size(2);
    torch::Tensor out = torch::empty({rows, cols, channels}, torch::kUInt8);
    image::mirror_rows({x.data_ptr<uint8_t>(), rows, cols, channels, x.stride(1)}, out.data_ptr<uint8_t>());
    return out.permute({2, 0, 1});
  }
  if (!x.is_cpu() || !x.is_contiguous()) return x.flip({-1});
  if (BatchSlots::holds(name, x)) {
    switch (x.element_size()) {
      case 1: reverse_rows<uint8_t>(x); return x;
      case 2: reverse_rows<uint16_t>(x); return x;
      case 4: reverse_rows<uint32_t>(x); return x;
      case 8: reverse_rows<uint64_t>(x); return x;
      default: break;
    }
  }
  torch::Tensor out = pooled_empty(x.sizes(), x.scalar_type());
  return at::flip_out(out, x, {-1});
}

// Mirror left-right with probability p. Landmarks are mirrored and their left/right indices
// swapped (a left eye corner becomes a right one), by the built-in face schemes (68/66/49 points)
// or an explicit `landmark_mirror` permutation. A head pose field `pose` (yaw, pitch, roll) turns
// and rolls the other way: yaw and roll change sign (Hopenet's flip augmentation).
class HorizontalFlip : public Transform {
 public:
  explicit HorizontalFlip(const Config& c)
      : fields_(SpatialFields::from(c)),
        p_(c.get<double>("p", 0.5)),
        mirror_(c.get<std::vector<int64_t>>("landmark_mirror", {})) {
    if (p_ < 0 || p_ > 1) fail("{}: {}.p: expected a probability, got {}", c.where("p"), c.prefix(), p_);
    std::vector<int64_t> sorted = mirror_;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i)
      if (sorted[i] != static_cast<int64_t>(i))
        fail("{}: {}.landmark_mirror: expected a permutation of 0..{}", c.where("landmark_mirror"), c.prefix(),
             sorted.size() - 1);
  }
  void apply(Sample& s, at::Generator& g) const override {
    if (random_unit(g) >= p_) return;
    const cv::Size in = spatial_size(s, fields_, "random_hflip");
    for (const auto* list : {&fields_.images, &fields_.masks})
      for (const auto& name : *list)
        if (s.fields.contains(name)) s.fields[name] = flipped(name, s.fields[name]);
    for (const auto& name : fields_.masks)
      if (s.ragged.contains(name)) s.ragged[name] = s.ragged[name].flip({-1});
    if (s.fields.contains("landmarks")) {
      torch::Tensor& landmarks = s.fields["landmarks"];
      const int64_t k = landmarks.size(0);
      std::vector<int64_t> order = mirror_.empty() ? face_landmark_mirror(k) : mirror_;
      if (static_cast<int64_t>(order.size()) != k)
        fail("{}: random_hflip: landmark_mirror has {} entries but the sample has {} landmarks", s.id, order.size(), k);
      landmarks = landmarks.index_select(0, torch::tensor(order, torch::kInt64));
    }
    if (s.fields.contains("pose")) {
      torch::Tensor& pose = s.fields["pose"];
      if (pose.size(-1) != 3) fail("{}: random_hflip: pose must be (yaw, pitch, roll), got {}", s.id, pose.sizes());
      pose = pose * torch::tensor({-1.0f, 1.0f, -1.0f}, pose.options());
    }
    // x' = W - x; boxes swap their x1 and x2 through the corner mapping.
    map_geometry(s, cv::Matx23d(-1, 0, in.width, 0, 1, 0), in, 0.0);
  }
  EightBit eight_bit_image() const override { return EightBit::keeps; }

 private:
  SpatialFields fields_;
  double p_;
  std::vector<int64_t> mirror_;
};

// Random rotation (degrees), scale, translation (fraction of the size) and shear about the centre,
// with probability p; the output keeps the input size.
class RandomAffine : public Transform {
 public:
  explicit RandomAffine(const Config& c)
      : fields_(SpatialFields::from(c)),
        degrees_(c.get<double>("degrees", 0.0)),
        translate_(c.get<double>("translate", 0.0)),
        scale_(c.get<std::vector<double>>("scale", {1.0, 1.0})),
        shear_(c.get<double>("shear", 0.0)),
        fill_(c.get<double>("fill", 0.0)),
        p_(c.get<double>("p", 1.0)) {
    if (scale_.size() != 2 || scale_[0] <= 0 || scale_[1] < scale_[0])
      fail("{}: {}.scale: expected [min, max] with 0 < min <= max", c.where("scale"), c.prefix());
    if (translate_ < 0 || translate_ > 1)
      fail("{}: {}.translate: expected a fraction in [0, 1], got {}", c.where("translate"), c.prefix(), translate_);
  }
  void apply(Sample& s, at::Generator& g) const override {
    // Draw every parameter even when p skips the transform, so the stream does not depend on p.
    const double angle = uniform(g, -degrees_, degrees_) * std::numbers::pi / 180.0;
    const double scale = uniform(g, scale_[0], scale_[1]);
    const double shear = uniform(g, -shear_, shear_) * std::numbers::pi / 180.0;
    const double tx = uniform(g, -translate_, translate_), ty = uniform(g, -translate_, translate_);
    if (uniform(g, 0, 1) >= p_) return;
    const cv::Size size = spatial_size(s, fields_, "random_affine");
    const double cx = size.width / 2.0, cy = size.height / 2.0;
    // p' = R S Sh (p - c) + c + t
    const double ca = std::cos(angle), sa = std::sin(angle), sh = std::tan(shear);
    const double a = scale * ca, b = scale * (ca * sh - sa), d = scale * sa, e = scale * (sa * sh + ca);
    const double ox = cx + tx * size.width - (a * cx + b * cy), oy = cy + ty * size.height - (d * cx + e * cy);
    const cv::Matx23d A(a, b, ox, d, e, oy);
    warp_fields(s, fields_, A, size, fill_);
    map_geometry(s, A, size);
  }

 private:
  SpatialFields fields_;
  double degrees_, translate_;
  std::vector<double> scale_;
  double shear_, fill_, p_;
};

FACET_REGISTER(transform_registry(), "resize", "Resize images, masks, landmarks and boxes (size: [H, W] or max_size)",
               [](const Config& c) { return std::make_shared<Resize>(c); });
FACET_REGISTER(transform_registry(), "center_crop", "Central crop of size (moves landmarks and boxes)",
               [](const Config& c) { return std::make_shared<Crop>(c, false); });
FACET_REGISTER(transform_registry(), "random_crop", "Crop of size at a random offset, optional padding",
               [](const Config& c) { return std::make_shared<Crop>(c, true); });
FACET_REGISTER(transform_registry(), "random_hflip",
               "Left-right flip with probability p; face landmarks swap left/right indices",
               [](const Config& c) { return std::make_shared<HorizontalFlip>(c); });
FACET_REGISTER(transform_registry(), "random_affine", "Random rotation, scale, translation and shear",
               [](const Config& c) { return std::make_shared<RandomAffine>(c); });

}  // namespace
}  // namespace facet::data
