// Weight converters: one name table per source architecture, turning a checkpoint's tensor names
// (and, where needed, values) into a Facet model's. `train.init_weights` entries pick one by name:
//
//   - {path: weights/resnet50.safetensors, convert: torchvision_resnet}        # finds the ResNet in the model
//   - {path: weights/vit-mae-base, convert: hf_vit, add_prefix: vit.}          # Hugging Face ViT / ViT-MAE
//   - {path: mae_pretrain_vit_base.safetensors, convert: timm_vit}             # MAE / timm, pos_embed resized
//   - {path: runs/x/checkpoints/best}                                          # Facet's own names (convert: facet)
//
// A converter sees names, dtypes and shapes only — of the file's tensors and of the model's tensors
// in the entry's scope (under add_prefix) — and returns a plan: for each model tensor, the file tensors
// it is made from and, when it is not a plain copy, how (q, k, v concatenated; a position table
// resized to the model's grid). The loader (init_weights.h) checks every shape before reading a byte,
// then streams the file through the plan tensor by tensor, so converters never hold a checkpoint.
//
// Converters are registered next to the model they target (torchvision_resnet in
// backbones/resnet.cpp; hf_vit and timm_vit in backbones/vit.cpp) and listed by `facet list
// converters`. Adding a source architecture is one registration:
//
//   FACET_REGISTER(converter_registry(), "hf_clip", "Hugging Face CLIP vision/text towers -> ...",
//                  make_converter([](const SourceTensors& file, const TargetShapes& model) {
//                    ConversionPlan plan;
//                    for (const auto& t : file) plan.copy(t.name, rename(t.name));   // the name table
//                    return plan;
//                  }));
//
// Hugging Face CLIP / LLaMA, open_clip and diffusers tables come with those models (later issues).
#pragma once

#include "core/registry.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace facet::models {

// A tensor of the file: its name after the entry's strip_prefix, its safetensors dtype and shape.
struct SourceTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};
using SourceTensors = std::vector<SourceTensor>;

// The model's parameters and buffers in the entry's scope: names without add_prefix -> shapes.
using TargetShapes = std::map<std::string, std::vector<int64_t>>;

// One model tensor and how to make it from file tensors.
struct TensorRecipe {
  std::string target;                // model name, relative to the entry's scope
  std::vector<std::string> sources;  // file names (as the converter saw them)
  // What `make` returns, for the shape check before anything is read; empty for a plain copy (the
  // single source's shape).
  std::vector<int64_t> shape;
  // Builds the tensor from the sources (views of the memory map, in the file's dtype; never write to
  // them); empty for a plain copy of sources[0]. The loader converts dtype and device when copying.
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> make;
  std::string note;  // logged, e.g. "resized from a 14x14 grid to 4x4"
};

struct ConversionPlan {
  std::vector<TensorRecipe> tensors;
  // File tensors left out on purpose, with the reason (an MAE decoder, a truncated trunk's layer4).
  std::vector<std::pair<std::string, std::string>> dropped;
  // The model names (relative to the scope) this file is meant to cover: a strict entry fails on
  // those it leaves out. nullopt: every name in the scope.
  std::optional<std::vector<std::string>> covers;

  void copy(const std::string& source, const std::string& target) { tensors.push_back({target, {source}, {}, {}, {}}); }
  void drop(const std::string& source, const std::string& why) { dropped.emplace_back(source, why); }
};

class WeightConverter {
 public:
  virtual ~WeightConverter() = default;
  // Throws facet::Error for a file it cannot convert; the loader adds the file and the config key.
  virtual ConversionPlan plan(const SourceTensors& file, const TargetShapes& model) const = 0;
};

using ConverterFunction = std::function<ConversionPlan(const SourceTensors&, const TargetShapes&)>;
// A converter from a plain function, for FACET_REGISTER.
std::function<std::shared_ptr<const WeightConverter>(const Config&)> make_converter(ConverterFunction function);

using ConverterRegistry = Registry<std::shared_ptr<const WeightConverter>>;
ConverterRegistry& converter_registry();

// --- helpers for converters ------------------------------------------------------------------------
// Prefixes P such that P + anchor is a model name ("" when the anchor itself is), in name order.
std::vector<std::string> prefixes_of(const TargetShapes& model, const std::string& anchor);
// The single place where an architecture sits in the model, found by its anchor tensor: an error
// naming `what` when there is none or several ("the model holds 2 ViTs (vits.0., vits.1.); choose one
// with add_prefix").
std::string locate(const TargetShapes& model, const std::string& anchor, const std::string& what);
// "[1, 197, 768]"
std::string shape_text(const std::vector<int64_t>& shape);

// --- summaries of long name lists ------------------------------------------------------------------
// "120 tensors: cnn.* (116), va_head.* (4); e.g. cnn.features.0.weight, va_head.0.weight" — counts
// by leading module, and at most `examples` names, never hundreds of names on one line.
std::string summarize_names(const std::vector<std::string>& names, size_t examples = 4);

// When the file's unexpected names and the model's missing names differ by one prefix, the
// add_prefix / strip_prefix that fixes it ("add_prefix: net."), else nullopt.
std::optional<std::string> suggest_prefix(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected);

}  // namespace facet::models
