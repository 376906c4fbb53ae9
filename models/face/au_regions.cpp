#include "models/face/au_regions.h"

#include "core/error.h"

#include <map>

namespace facet::models::face {

namespace {

// 0-based 49-point index -> 68- and 66-point index (face.md §C.1: the 49 points are the 68 without
// the 17 jaw points and the inner-mouth corners 61 and 65, 1-based; the 66 lack only those corners).
int64_t from_49(int64_t i, int64_t scheme) {
  if (scheme == 49) return i;
  if (i < 43) return i + 17;
  static const int64_t inner68[6] = {61, 62, 63, 65, 66, 67}, inner66[6] = {60, 61, 62, 63, 64, 65};
  return scheme == 68 ? inner68[i - 43] : inner66[i - 43];
}

struct Rule {
  int64_t a, b;     // 49-point indices of the two centres
  double shift;     // vertical shift in rulers (negative: up)
};

// JAA-Net's AlignNet table (face.md §C.3); AU14/15 share AU12's map, AU24 AU23's.
const std::map<int, Rule>& rules() {
  static const std::map<int, Rule> r = {
      {1, {4, 5, -0.5}},  {2, {1, 8, -1.0 / 3}}, {4, {2, 7, 1.0 / 3}}, {6, {24, 29, 1.0}}, {7, {21, 26, 0}},
      {9, {15, 17, -0.5}}, {10, {43, 45, 0}},    {12, {31, 37, 0}},    {14, {31, 37, 0}}, {15, {31, 37, 0}},
      {17, {39, 41, 0.5}}, {23, {34, 40, 0}},    {24, {34, 40, 0}},    {25, {34, 40, 0}}, {26, {39, 41, 0.5}}};
  return r;
}

}  // namespace

torch::Tensor au_centres(const torch::Tensor& landmarks, const std::vector<int>& aus) {
  if (landmarks.dim() != 3 || landmarks.size(2) != 2) fail("AU regions: landmarks must be [B, K, 2], got {}", landmarks.sizes());
  const int64_t scheme = landmarks.size(1);
  if (scheme != 68 && scheme != 66 && scheme != 49) fail("AU regions: need 68, 66 or 49 landmarks, got {}", scheme);
  std::vector<int64_t> index;
  std::vector<double> shifts;
  for (int au : aus) {
    auto it = rules().find(au);
    if (it == rules().end()) fail("AU regions: no JAA-Net region rule for AU{}", au);
    index.push_back(from_49(it->second.a, scheme));
    index.push_back(from_49(it->second.b, scheme));
    shifts.push_back(it->second.shift);
  }
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(landmarks.device());
  const torch::Tensor p = landmarks.to(torch::kFloat);
  const int64_t b = p.size(0), n = static_cast<int64_t>(aus.size());
  const torch::Tensor centres = p.index_select(1, torch::tensor(index, opts)).view({b, n, 2, 2});
  // The ruler: the distance between the inner eye corners (49-point 22 and 25, 0-based).
  const torch::Tensor ruler = (p.select(1, from_49(22, scheme)).select(1, 0) - p.select(1, from_49(25, scheme)).select(1, 0)).abs();
  const torch::Tensor dy = ruler.view({b, 1, 1}) * torch::tensor(shifts, p.options()).view({1, n, 1});  // [B, N, 1]
  return centres + torch::stack({torch::zeros_like(dy), dy}, -1);
}

torch::Tensor sample_regions(const torch::Tensor& features, const torch::Tensor& centres, const torch::Tensor& side,
                             std::pair<int64_t, int64_t> image_size, int64_t k) {
  const int64_t b = features.size(0), m = centres.size(1);
  const double h = static_cast<double>(image_size.first), w = static_cast<double>(image_size.second);
  // Offsets of the k x k points inside the unit square, centred: (i + 0.5) / k - 0.5.
  const torch::Tensor steps = (torch::arange(k, centres.options()) + 0.5) / static_cast<double>(k) - 0.5;
  const torch::Tensor oy = steps.view({k, 1}).expand({k, k}), ox = steps.view({1, k}).expand({k, k});
  const torch::Tensor offsets = torch::stack({ox, oy}, -1).view({1, 1, k * k, 2});            // [1, 1, k², 2]
  const torch::Tensor s = side.dim() == 0 ? side.expand({b, m}) : side;                         // [B, M]
  const torch::Tensor points = centres.unsqueeze(2) + offsets * s.view({b, m, 1, 1});          // [B, M, k², 2]
  // Continuous pixels -> grid_sample's [-1, 1] (align_corners = false: -1 and 1 are the outer edges).
  const torch::Tensor scale = torch::tensor({2.0 / w, 2.0 / h}, centres.options());
  const torch::Tensor grid = points * scale - 1;
  const torch::Tensor sampled = torch::nn::functional::grid_sample(
      features, grid, torch::nn::functional::GridSampleFuncOptions().align_corners(false).padding_mode(torch::kZeros));
  return sampled.mean(-1).permute({0, 2, 1});  // [B, C, M, k²] -> [B, M, C]
}

}  // namespace facet::models::face
