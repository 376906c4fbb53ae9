// Pictures of what a model sees, for TensorBoard and the run directory: a grid of a batch's
// images, each scaled to its own value range (so HU, 16-bit and normalised inputs all show).
#pragma once

#include <torch/types.h>

#include <string>

namespace facet::train {

struct Png {
  std::string bytes;
  int height = 0, width = 0, channels = 0;
};

// [B, C, H, W] -> one PNG of at most `max_images` tiles, `columns` per row. Three channels are
// shown as RGB; any other count shows the middle channel (the key slice of a CT stack) in grey.
Png image_grid_png(const torch::Tensor& images, int64_t max_images, int64_t columns = 8);

}  // namespace facet::train
