// CLIP's image preprocessing as transformers' CLIPImageProcessor (torchvision backend) does it, for the
// vision-language datasets: grey -> RGB, optional LLaVA pad-to-square with the mean colour
// (expand2square: the image centred on a square of side max(H, W) filled with int(mean * 255)),
// bicubic resize of the shortest side (antialiased, rounded back to 8 bits), centre crop, rescale by
// 1/255 and normalisation with CLIP's mean and std. EmoLA trains with pad_to_square and evaluates
// without it (its eval_FABA.py calls the processor directly); LiteGPT resizes to 224 x 224 without a
// crop (`square_resize`).
#pragma once

#include <torch/torch.h>

#include <array>

namespace facet::models::vlm {

struct ClipPreprocessOptions {
  int64_t size = 336;       // shortest side after resizing
  int64_t crop_size = 336;  // centre crop (square)
  bool pad_to_square = false;
  bool square_resize = false;  // resize straight to size x size (no aspect ratio, no crop): LiteGPT's Resize((224, 224))
  std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};  // OpenAI CLIP
  std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
};

// image: uint8 [H, W] (grey), [H, W, 3] or [H, W, 1] (HWC, as images are decoded), or float [C, H, W]
// in [0, 1] (C = 1 or 3). Returns float [3, crop_size, crop_size] (size x size with square_resize).
torch::Tensor clip_preprocess(const torch::Tensor& image, const ClipPreprocessOptions& options = {});

}  // namespace facet::models::vlm
