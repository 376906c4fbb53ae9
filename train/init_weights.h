// Initialising a new run's model from other weights — an ImageNet backbone, an MAE checkpoint, the
// BP4D model a DISFA run starts from (JAA-Net's practice, face.md §B.3) — by name, with a prefix
// map, ignore patterns and the Hugging Face ViT conversion:
//
//   train:
//     init_weights:
//       - {path: weights/resnet50.safetensors, add_prefix: backbone., ignore: ['^fc\.', '^layer4\.']}
//       - {path: runs/mgrr_bp4d/fold1/checkpoints/best, ignore: ['^classifier']}
//       - {path: weights/vit-mae-base, convert: hf_vit, add_prefix: vit., strict: false}
//
// Every entry loads in order; `strict` (default true) fails on names of the model the file lacks
// under `add_prefix` or names of the file the model lacks. Only new runs read it (a resumed run
// restores its own checkpoint).
#pragma once

#include "core/config.h"

#include <torch/torch.h>

namespace facet::train {

void init_weights(torch::nn::Module& model, const Config& list);

}  // namespace facet::train
