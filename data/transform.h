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
};

using TransformRegistry = Registry<std::shared_ptr<Transform>>;
TransformRegistry& transform_registry();

// The transforms of a `transforms` list node, in order.
std::vector<std::shared_ptr<Transform>> build_transforms(const Config& list);

}  // namespace facet::data
