// Pictures of what a model sees, for TensorBoard and the run directory: a grid of a batch's
// images, each scaled to its own value range (so HU, 16-bit and normalised inputs all show).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace facet::train {

struct Png {
  std::string bytes;
  int height = 0, width = 0, channels = 0;
};

// [B, C, H, W] -> one PNG of at most `max_images` tiles, `columns` per row. Three channels are
// shown as RGB; any other count shows the middle channel (the key slice of a CT stack) in grey.
Png image_grid_png(const torch::Tensor& images, int64_t max_images, int64_t columns = 8);

// The same tiles (enlarged to at least 160 px), each captioned with its labels for multi-label
// tasks (AUs, findings): the true labels, green where predicted and orange where missed, then the
// false positives in red. truth, predicted: [B, L] (0/1; truth < 0 or masked out: not shown).
Png labelled_grid_png(const torch::Tensor& images, const torch::Tensor& truth, const torch::Tensor& predicted,
                      const std::vector<std::string>& names, int64_t max_images, int64_t columns = 6);

}  // namespace facet::train
