// Loading pre-trained weights into a model: THE one path (train.init_weights, and any model part that
// starts from a checkpoint — model constructors read no files). A list of entries, applied in order:
//
//   train:
//     init_weights:
//       - {path: weights/resnet50.safetensors, convert: torchvision_resnet, add_prefix: backbone.}
//       - {path: weights/vit-mae-base, convert: hf_vit, add_prefix: vit., ignore: ['^vit\.pooler']}
//       - {path: runs/mgrr_bp4d/fold1/checkpoints/best, ignore: ['^classifier'], strict: false}
//
// Entry keys:
//   path          a .safetensors file, a *.safetensors.index.json sharded checkpoint, or a directory
//                 holding model.safetensors[.index.json]
//   convert       a registered converter (converter.h, `facet list converters`); default facet (names as they are)
//   add_prefix    the model part the entry loads into: only model tensors under it are considered, and
//                 the converter's names get it in front (vit. -> vit.blocks.0...)
//   strip_prefix  removed from the front of the file's names that have it, before the converter
//   ignore        ECMAScript regexes searched in the file's names: matching tensors are not loaded
//                 (and the model tensors they would have filled may stay as they are)
//   strict        default true: every model tensor the entry covers (the scope, or what the converter
//                 says the file covers) must be loaded and every file tensor used, else an error that
//                 names them — with the add_prefix / strip_prefix that would fix it when one would
//
// Shapes are checked, for every tensor, before a byte is copied: an error names the model tensor, the
// shape the model expects and the file tensor and shape found. Large checkpoints stream: each tensor
// is read from the memory map and copied straight into its parameter (dtype conversion and device
// move in the copy), after which its mapped pages are dropped (madvise), so resident memory stays at
// the model's size, never model + file. After the last entry, tensors built without initialisation
// (ConstructionScope with defer_init, construction.h) must all have been loaded.
#pragma once

#include "core/config.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace facet::models {

// What one entry loaded, for checkpoints that reference frozen weights instead of re-saving them:
// save the record with the run, and reapply() it on resume.
struct LoadedWeights {
  std::string path;          // as the entry gave it
  // "xxh64:<16 hex digits>": XXH64 (core/hash.h) of the file's bytes; for a sharded checkpoint, of the
  // index file's bytes followed by every shard's bytes, shards in file-name order — the same digest as
  // `cat model.safetensors.index.json model-0000*.safetensors | xxhsum -H1`. Computed while the
  // tensors stream in, so it costs no extra pass over the file.
  std::string content_hash;
  std::string entry_yaml;    // the entry as inline YAML ({path: ..., convert: ...}), to re-apply it
  std::vector<std::string> tensors;  // model names it loaded, sorted
};

struct InitWeightsOptions {
  // Fail when a tensor built without initialisation is still unloaded after the last entry.
  bool check_initialized = true;
};

// Applies the entries of `list` (a YAML list) in order. Errors name the entry's file:line and key.
std::vector<LoadedWeights> init_weights(torch::nn::Module& model, const Config& list, const InitWeightsOptions& options = {});

// Re-applies a recorded entry: the file must still have the recorded content hash (else an error
// naming the file: it changed since the record was made) and give the same tensors.
LoadedWeights reapply_weights(torch::nn::Module& model, const LoadedWeights& record);

// What no entry loaded, for the log: "12 of 212 model tensors keep their initialisation: 12 tensors:
// cnn.* (8), va_head.* (4); e.g. ...". Empty when every tensor was loaded.
std::string describe_unloaded(const torch::nn::Module& model, const std::vector<LoadedWeights>& loaded);

}  // namespace facet::models
