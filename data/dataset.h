// Dataset, Sample and Batch: what the loader moves. A dataset opens and validates its files when it
// is built and names the bad file; `get` is called concurrently from the loader's worker threads.
#pragma once

#include "core/registry.h"
#include "core/tensor_dict.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace facet::data {

// One example. `fields` of equal shape across samples are stacked by `collate`; `ragged` fields
// (boxes, landmarks of varying count) stay one tensor per sample.
//
// Names every reader and transform agrees on (coordinates in pixels of the current image, x right,
// y down, pixel centres at integer + 0.5 as in OpenCV's and torchvision's resize):
//   fields["image"]       float32 [C, H, W], intensities in the file's units (0..255, 0..65535,
//                         Hounsfield units for CT) until a transform rescales them
//   fields["mask"]        float32 [1, H, W] (segmentation or bounding map)
//   fields["landmarks"]   float32 [K, 2] (x, y)
//   fields["labels"]      float32 [L] multi-label targets (AUs, findings); fields["label_mask"]
//                         float32 [L]: 1 where the label is known, 0 where it is not (BP4D's 9)
//   fields["label"]       int64 [] single-label class
//   ragged["boxes"]       float32 [N, 4] (x1, y1, x2, y2); ragged["box_labels"] int64 [N]
struct Sample {
  TensorDict fields;
  TensorDict ragged;
  std::map<std::string, std::string> text;  // questions, reference answers, prompts
  std::string id;  // file path or dataset-specific identifier, for error messages and predictions
};

struct Batch {
  TensorDict fields;                                        // [B, ...] each
  std::map<std::string, std::vector<torch::Tensor>> ragged;  // B tensors each
  std::map<std::string, std::vector<std::string>> text;      // B strings each
  std::vector<std::string> ids;
  torch::Tensor indices;  // int64 [B]: dataset indices, for per-sample feedback (curriculum)

  int64_t size() const { return indices.defined() ? indices.size(0) : 0; }
  Batch to(const torch::Device& device, bool non_blocking = false) const;
};

// The batch field a loss or metric reads to know which values are labelled (1) and which missing
// (0), e.g. `mask: va_mask`. A name the config sets must be in every batch, so a misspelt key is an
// error rather than a mask of ones over the zeros the readers write for missing values; the
// default name may be absent (a dataset with nothing missing).
class MaskField {
 public:
  // `key` of `c` (e.g. "mask"), `fallback` when the config does not set it.
  MaskField(const Config& c, const std::string& key, const std::string& fallback);

  // The mask in `like`'s dtype and device, viewed as `like`; ones when an unset name is absent.
  torch::Tensor of(const Batch& batch, const torch::Tensor& like) const;

 private:
  std::string name_, origin_;  // origin_: "file:line: key" when the config set it, else empty
};

// Stacks fields; fails naming the sample ids when a field's shapes disagree.
Batch collate(std::vector<Sample> samples, std::vector<int64_t> indices);

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // `augment_seed` makes random augmentation a function of (seed, epoch, index) alone, so the data
  // do not depend on the number of worker threads; evaluation datasets ignore it.
  virtual Sample get(int64_t index, uint64_t augment_seed) const = 0;
  // Class or field names, for logs and metric tables.
  virtual std::vector<std::string> label_names() const { return {}; }
};

// Built from the `data` node of a config and the split name ("train", "val", "test").
using DatasetRegistry = Registry<std::shared_ptr<Dataset>, const std::string&>;
DatasetRegistry& dataset_registry();

}  // namespace facet::data
