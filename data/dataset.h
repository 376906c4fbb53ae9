// Dataset, Sample and Batch: what the loader moves. A dataset opens and validates its files when it
// is built and names the bad file; `get` is called concurrently from the loader's worker threads.
#pragma once

#include "core/registry.h"
#include "core/tensor_dict.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace facet::data {

class BatchSlots;

// One example. `fields` of equal shape across samples are stacked by `collate` (the fields a dataset
// pads, see Padding, may differ in their first dimension); `ragged` fields (boxes, landmarks of
// varying count) stay one tensor per sample. Every sample of a batch has the same field and ragged
// keys: a missing one is an error naming the sample, never a shorter list that shifts the others.
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
//   ragged["boxes"]       float32 [N, 4] (x1, y1, x2, y2)
//   ragged["box_*"]       per-box fields, first dimension N, row i belonging to box i:
//                         box_labels int64 [N] (class), box_types int64 [N] (DeepLesion's coarse
//                         lesion type), box_noisy bool [N], box_readers int64 [N] (VinDr-CXR's
//                         radiologist), box_masks [N, H, W], ... A transform that drops a box drops
//                         the same row of every per-box field; a per-box field without `boxes`, or
//                         whose first dimension is not N, is an error naming the sample and the key.
//   text datasets: fields["input_ids"] int64 [T] tokens, fields["attention_mask"] int64 [T] and
//                         fields["labels"] int64 [T] target tokens, kIgnoreIndex (-100) where no
//                         loss is taken; T varies, and the dataset says how to pad (Dataset::padding)
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

// The target value losses skip (torch's cross_entropy default and Hugging Face's label padding).
inline constexpr int64_t kIgnoreIndex = -100;

// How `collate` pads one variable-length field to the longest in the batch along its first
// dimension (sequences: [T] or [T, D]). Its other dimensions must agree across the batch.
struct Padding {
  double value = 0;  // input_ids: the tokenizer's pad id; attention_mask: 0; labels: kIgnoreIndex
  bool left = false;  // pad before the sequence (batched generation with a decoder) instead of after
  // When set, collate adds fields[mask] int64 [B, T_max]: 1 on the sample's own positions, 0 on the
  // padding (for datasets that do not write an attention mask themselves).
  std::string mask;
};
using PaddingSpec = std::map<std::string, Padding>;  // field -> how it is padded

// Whether ragged key `name` is a per-box field (`box_` prefix; see Sample).
bool is_per_box(std::string_view name);
// Fails naming the sample and the key when a per-box field has no `boxes` beside it or a first
// dimension other than the number of boxes. `where` says who checks (a transform, collate).
void check_per_box_fields(const Sample& s, std::string_view where);

// Stacks fields, padding those in `padding` (with their masks); keeps ragged fields as per-sample
// lists. Fails naming the sample ids when a field's shapes disagree and naming the sample and key
// when a sample lacks a field or ragged key another sample has. A field whose samples' tensors are
// already the rows of one of `slots`' tensors (data/batch_slots.h) is that tensor, not a copy.
Batch collate(std::vector<Sample> samples, std::vector<int64_t> indices, const PaddingSpec& padding = {},
              const BatchSlots* slots = nullptr);

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // `augment_seed` makes random augmentation a function of (seed, epoch, index) alone, so the data
  // do not depend on the number of worker threads; evaluation datasets ignore it.
  virtual Sample get(int64_t index, uint64_t augment_seed) const = 0;
  // Class or field names, for logs and metric tables.
  virtual std::vector<std::string> label_names() const { return {}; }
  // The fields of varying length that `collate` pads, and how (none by default: every field stacks);
  // whoever collates this dataset's samples passes it on.
  virtual PaddingSpec padding() const { return {}; }
  // Whether get() puts the reader's image straight into the sample untouched, so that under
  // EightBitImages (data/transform.h) it may be 8-bit, and under KeptWindow only the first
  // transform's crop of it computed: the face readers (face::read_frame). A dataset that works on
  // the pixels itself, reads other pictures with the same reader, or wraps another, keeps the default.
  virtual bool passes_eight_bit_images() const { return false; }
};

// Built from the `data` node of a config and the split name ("train", "val", "test").
using DatasetRegistry = Registry<std::shared_ptr<Dataset>, const std::string&>;
DatasetRegistry& dataset_registry();

}  // namespace facet::data
