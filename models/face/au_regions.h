// AU regions of interest from facial landmarks, as JAA-Net and EAC-Net place them (face.md §C.3):
// two centres per AU at landmarks of the 49-point scheme, shifted vertically by a fraction of the
// inner-eye-corner distance; and bilinear sampling of a feature map around such centres. Shared by
// MGRR-Net and ALGRNet.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace facet::models::face {

// [B, N, 2, 2]: the two centres (x, y) of each of `aus` (AU numbers, e.g. BP4D's 12), in the
// landmarks' pixel coordinates. landmarks: [B, K, 2] with K = 68, 66 or 49. An AU without a JAA-Net
// centre rule is an error naming it.
torch::Tensor au_centres(const torch::Tensor& landmarks, const std::vector<int>& aus);

// Samples `features` [B, C, h, w] (covering an input of `image_size` = (H, W) pixels) on a k x k grid
// of points spanning a square of side `side` pixels around every centre ([B, M, 2] in input pixels,
// or [B, M] x `side` per centre when `side` is [B, M]) and averages them: [B, M, C]. Differentiable in
// the features and in the centres and sides (ALGRNet learns them). Outside the map reads as 0.
torch::Tensor sample_regions(const torch::Tensor& features, const torch::Tensor& centres, const torch::Tensor& side,
                             std::pair<int64_t, int64_t> image_size, int64_t k = 3);

}  // namespace facet::models::face
