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

#include <memory>
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
};

using TransformRegistry = Registry<std::shared_ptr<Transform>>;
TransformRegistry& transform_registry();

// The transforms of a `transforms` list node, in order.
std::vector<std::shared_ptr<Transform>> build_transforms(const Config& list);

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

}  // namespace facet::data
