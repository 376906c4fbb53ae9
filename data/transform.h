// Transforms: per-sample operations built by name from the `data.transforms` list and applied by
// the loader's worker threads after Dataset::get. Randomness comes from the per-sample generator
// the loader passes in, so augmentation depends on (seed, epoch, index) only.
//
//   data:
//     transforms:
//       - {name: random_hflip, p: 0.5, fields: [image]}
//       - {name: normalize, mean: [0.5], std: [0.25], field: image}
#pragma once

#include "data/dataset.h"

#include <opencv2/core/types.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace facet::data {

class Transform {
 public:
  virtual ~Transform() = default;
  virtual void apply(Sample& sample, at::Generator& generator) const = 0;

  // The loader's 8-bit path (below): what the transform does with an 8-bit `image` field.
  enum class EightBit {
    refuses,   // needs float pixels (the default)
    keeps,     // works on it and leaves it 8-bit (crops without padding, flips)
    converts,  // turns it into float itself (normalize)
  };
  virtual EightBit eight_bit_image() const { return EightBit::refuses; }

  // For a transform that keeps only a window of the `image` field (a crop without padding): the
  // window it will keep of an image of `size`, drawn from `generator` as apply() draws from it (the
  // caller passes a copy). Lets a reader compute only those pixels (KeptWindow). None by default.
  virtual std::optional<cv::Rect> image_window(cv::Size size, at::Generator& generator) const {
    (void)size, (void)generator;
    return std::nullopt;
  }

  // An elementwise transform (the same map of every value of a channel, channels along dim 0, no
  // randomness) names the float field it maps; apply_transforms then runs consecutive ones on that
  // field block by block, so the values make one trip through memory, not one per transform.
  virtual const std::string* elementwise_field() const { return nullptr; }
  // Throws the transform's own error when `x`, the float field, does not suit it.
  virtual void check_elementwise(const Sample& sample, const torch::Tensor& x) const { (void)sample, (void)x; }
  // The map of n values of `channel`, in place: bitwise what apply() computes.
  virtual void map_values(float* values, int64_t n, int64_t channel) const { (void)values, (void)n, (void)channel; }
  // Whether apply() writes the field's final values into the sample's row of the batch (normalize).
  virtual bool writes_batch_row() const { return false; }
};

using TransformRegistry = Registry<std::shared_ptr<Transform>>;
TransformRegistry& transform_registry();

// The transforms of a `transforms` list node, in order.
std::vector<std::shared_ptr<Transform>> build_transforms(const Config& list);

// The transforms applied in order to a sample, as the loader does: a run of elementwise ones on the
// same float field in one pass, into the sample's row of the batch when one is open
// (data/batch_slots.h). The same values as calling each apply() in turn.
void apply_transforms(const std::vector<std::shared_ptr<Transform>>& transforms, Sample& sample, at::Generator& generator);

// Whether `transforms` can take the `image` field 8-bit: each keeps it 8-bit until one converts it to
// float (crop, flip, normalize: the face models' pipeline). The loader then lets readers hand over
// 8-bit images (EightBitImages), and the pixels go from 8-bit to normalised float in one pass
// instead of to float in the reader, then through the crop, flip and normalise as float.
bool takes_eight_bit_images(const std::vector<std::shared_ptr<Transform>>& transforms);

// While one lives on a thread, readers that decode 8-bit pictures may return the `image` field as
// uint8 [C, H, W] with any strides (a view of the decoded buffer); elsewhere images are float, as
// Dataset::get promises. Only the loader opens one, around samples whose transforms take 8-bit
// images.
class EightBitImages {
 public:
  EightBitImages();
  ~EightBitImages();
  EightBitImages(const EightBitImages&) = delete;
  EightBitImages& operator=(const EightBitImages&) = delete;
  static bool allowed();

 private:
  bool previous_;
};

// While one lives on a thread, a reader whose picture goes untouched into the sample's `image` field
// (Dataset::passes_eight_bit_images) may compute only the window of it that the first transform keeps,
// leaving the rest of the picture zero: a face reader then resizes ~3/4 of a 200 x 200 frame for a
// 176 x 176 crop. Only the loader opens one, around Dataset::get on the 8-bit path, with the
// generator the transforms will then draw from.
class KeptWindow {
 public:
  KeptWindow(const Transform& first, const at::Generator& generator);
  ~KeptWindow();
  KeptWindow(const KeptWindow&) = delete;
  KeptWindow& operator=(const KeptWindow&) = delete;
  // The window of a picture of `size` that the first transform keeps: all of it when no KeptWindow
  // is open on this thread or the transform cannot tell.
  static cv::Rect of(cv::Size size);

 private:
  const Transform& first_;
  const at::Generator& generator_;
  KeptWindow* previous_;
};

}  // namespace facet::data
