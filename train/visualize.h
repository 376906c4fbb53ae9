// Pictures of what a model sees and says, for TensorBoard, the run directory and `facet predict`.
// A Visualizer is chosen by the task — the config's `visualizer` node, else the model's
// default_visualizer(): a multi-label grid (AUs), class captions, boxes drawn on the image
// (detection), the image with its generated text (vision-language), a grid of generated samples.
// Tiles are scaled to their own value range, so HU, 16-bit and normalised inputs all show.
#pragma once

#include "core/outputs.h"
#include "core/registry.h"
#include "data/dataset.h"

#include <torch/types.h>

#include <optional>

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

// What a visualiser draws from: a batch (on the CPU; "image" after the evaluation transforms,
// the truth in its fields and ragged lists) and the model's outputs for it.
struct VisualInput {
  const data::Batch& batch;
  const Outputs& outputs;
  const std::vector<std::string>& label_names;
};

class Visualizer {
 public:
  virtual ~Visualizer() = default;
  // Names the picture: <split>/<tag> in TensorBoard, <split>_<tag>.png on disk.
  virtual std::string tag() const = 0;
  // A picture of at most `max_images` samples, or nullopt when the batch holds nothing to draw.
  virtual std::optional<Png> draw(const VisualInput& input, int64_t max_images) const = 0;
};

using VisualizerRegistry = Registry<std::shared_ptr<Visualizer>>;
VisualizerRegistry& visualizer_registry();

}  // namespace facet::train
