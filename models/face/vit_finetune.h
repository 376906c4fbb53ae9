// Starting a ViT from a pre-trained checkpoint for fine-tuning, as MAE's fine-tuning code (and the
// EMMA / Masked CoTEX release built on it, face.md §4.1, §4.5) does: MAE / timm names (or Hugging
// Face ViT / ViT-MAE names through convert_hf_vit), position embeddings resized bicubically when
// the patch grid differs, and the checkpoint's classifier, MAE decoder and mask token left out —
// the model's own head keeps its fresh initialisation.
#pragma once

#include "core/safetensors.h"
#include "models/backbones/vit.h"

#include <filesystem>
#include <string_view>

namespace facet::models::face {

// pos_embed [1, extra + g0*g0, D] -> [1, extra + grid*grid, D]: the `extra` leading (CLS) rows are
// kept, the patch rows are resized as a g0 x g0 image (bicubic, align_corners false, as DeiT / MAE's
// interpolate_pos_embed). Unchanged when the grids agree.
torch::Tensor resize_position_embedding(const torch::Tensor& pos_embed, int64_t grid, int64_t extra = 1);

// Loads `path` (safetensors) into `vit`. Every backbone tensor must be present and of the right
// shape, else an error naming the file and the keys; the module's own `head.*` (if it registered
// one) is allowed to be missing. Leading "module." or "vit." prefixes are stripped.
safetensors::LoadReport load_vit_checkpoint(ViTImpl& vit, const std::filesystem::path& path);

}  // namespace facet::models::face
