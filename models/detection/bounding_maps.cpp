#include "models/detection/bounding_maps.h"

#include "core/error.h"
#include "models/detection/ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace facet::models::detection {

namespace F = torch::nn::functional;

namespace {

// np.round: half to even (std::nearbyint in the default rounding mode).
int64_t round_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// Python slice [a, b) of a length-n axis, clipped to the canvas (see the header: no wrap-around).
void fill(torch::TensorAccessor<float, 1> v, int64_t a, int64_t b, float value) {
  const int64_t n = v.size(0);
  for (int64_t i = std::max<int64_t>(a, 0); i < std::min(b, n); ++i) v[i] = value;
}

// The ridge profile along one axis: 1 at the centre, 1 - k t at centre +- t for t = 1..len.
void ridge(torch::TensorAccessor<float, 1> v, int64_t centre, int64_t len, double k) {
  fill(v, centre, centre + 1, 1.0f);
  for (int64_t t = 1; t <= len; ++t) {
    const auto value = static_cast<float>(1.0 - k * static_cast<double>(t));
    fill(v, centre - t, centre - t + 1, value);
    fill(v, centre + t, centre + t + 1, value);
  }
}

}  // namespace

BoundingMaps box_bounding_maps(const torch::Tensor& boxes_in, int64_t height, int64_t width, const BoundingMapOptions& o) {
  if (boxes_in.dim() != 2 || boxes_in.size(1) != 4) fail("bounding_maps: expected boxes [N, 4], got {}", boxes_in.sizes());
  if (height <= 0 || width <= 0) fail("bounding_maps: empty canvas {} x {}", height, width);
  const auto boxes = boxes_in.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t n = boxes.size(0);
  const auto f = torch::TensorOptions().dtype(torch::kFloat);
  BoundingMaps out{torch::zeros({n, height, width}, f), torch::zeros({n, height, width}, f), torch::Tensor()};
  const auto b = boxes.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const double x1 = b[i][0] - o.offset, y1 = b[i][1] - o.offset, x2 = b[i][2] - o.offset, y2 = b[i][3] - o.offset;
    const double dx = 0.5 * (x2 - x1), dy = 0.5 * (y2 - y1);
    const int64_t cx = round_even(x1 + dx), cy = round_even(y1 + dy);
    const int64_t ix1 = round_even(x1), ix2 = round_even(x2), iy1 = round_even(y1), iy2 = round_even(y2);
    const int64_t nx = round_even(dx), ny = round_even(dy);
    auto rows_x = torch::zeros({height}, f), cols_x = torch::zeros({width}, f);  // BM_x = rows_x ⊗ cols_x
    auto rows_y = torch::zeros({height}, f), cols_y = torch::zeros({width}, f);  // BM_y = rows_y ⊗ cols_y
    const bool adaptive = o.size_adaptive || o.center_plateau;
    const bool small = adaptive && dx * dy < o.small_half_area;
    if (small && o.center_plateau) {  // center_1: exactly 1 on the rounded box
      fill(rows_x.accessor<float, 1>(), iy1, iy2, 1.0f);
      fill(cols_x.accessor<float, 1>(), ix1, ix2, 1.0f);
      rows_y.copy_(rows_x);
      cols_y.copy_(cols_x);
    } else {
      double kx = dx > 1 ? 0.5 / dx : 0.5, ky = dy > 1 ? 0.5 / dy : 0.5;
      if (adaptive) {  // the size_adapt branch has no dx <= 1 fallback
        kx = small ? 0.0 : 0.5 / dx;
        ky = small ? 0.0 : 0.5 / dy;
      }
      fill(rows_x.accessor<float, 1>(), iy1, iy2, 1.0f);
      ridge(cols_x.accessor<float, 1>(), cx, nx, kx);
      ridge(rows_y.accessor<float, 1>(), cy, ny, ky);
      fill(cols_y.accessor<float, 1>(), ix1, ix2, 1.0f);
    }
    out.x[i] = rows_x.unsqueeze(1) * cols_x.unsqueeze(0);
    out.y[i] = rows_y.unsqueeze(1) * cols_y.unsqueeze(0);
    if (o.center_plateau && !small) {  // rows / columns [c - 8, c + 6) as coded ("ctr - 1 - 7 : ctr - 1 + 7")
      const int64_t h = o.plateau / 2;
      const int64_t r0 = std::max<int64_t>(cy - 1 - h, 0), r1 = std::min(cy - 1 + h, height);
      const int64_t c0 = std::max<int64_t>(cx - 1 - h, 0), c1 = std::min(cx - 1 + h, width);
      if (r1 > r0 && c1 > c0) {
        out.x[i].slice(0, r0, r1).slice(1, c0, c1).fill_(1.0f);
        out.y[i].slice(0, r0, r1).slice(1, c0, c1).fill_(1.0f);
      }
    }
  }
  out.xy = torch::sqrt(out.x * out.y);
  const auto device = boxes_in.device();
  return {out.x.to(device), out.y.to(device), out.xy.to(device)};
}

BoundingMaps bounding_maps(const torch::Tensor& boxes, int64_t height, int64_t width, const BoundingMapOptions& o) {
  const auto m = box_bounding_maps(boxes, height, width, o);
  return {m.x.sum(0).clamp_max(1.0), m.y.sum(0).clamp_max(1.0), m.xy.sum(0).clamp_max(1.0)};
}

torch::Tensor anchor_map_targets(const torch::Tensor& map, const std::vector<std::pair<int64_t, int64_t>>& level_sizes,
                                 int64_t num_anchors, const torch::Tensor& gt_boxes, const SizeAwareChannels& s) {
  if (map.dim() != 2) fail("anchor_map_targets: expected a map [H, W], got {}", map.sizes());
  auto weights = torch::ones({num_anchors}, map.options());
  if (!s.anchor_areas.empty() && gt_boxes.size(0) > 0) {
    const auto scales = static_cast<int64_t>(s.anchor_areas.size());
    if (scales * s.num_ratios != num_anchors)
      fail("size-aware channels: {} scales x {} ratios for {} anchors per location", scales, s.num_ratios, num_anchors);
    const double largest = box_area(gt_boxes).max().item<double>();
    int64_t group = scales - 1;
    for (int64_t k = 0; k < scales; ++k)
      if (largest < s.anchor_areas[static_cast<size_t>(k)]) {
        group = k;
        break;
      }
    weights.fill_(s.others);
    for (int64_t r = 0; r < s.num_ratios; ++r) weights[r * scales + group] = 1.0;
  }
  std::vector<torch::Tensor> out;
  const auto m = map.unsqueeze(0).unsqueeze(0);
  for (const auto& [h, w] : level_sizes) {
    const auto level = F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest))[0][0];
    out.push_back((level.unsqueeze(-1) * weights).reshape({-1}));
  }
  return torch::cat(out);
}

BmcSample sample_bmc(const torch::Tensor& anchors, const torch::Tensor& gt, const torch::Tensor& targets, int64_t num,
                     double pos_fraction, const BmcOptions& o) {
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(anchors.device());
  const int64_t n = anchors.size(0), g = gt.size(0);
  std::vector<torch::Tensor> pos, pos_gt;
  if (g > 0 && n > 0) {
    const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(num) * pos_fraction) / g);
    const auto acx = (anchors.select(1, 0) + anchors.select(1, 2)) / 2, acy = (anchors.select(1, 1) + anchors.select(1, 3)) / 2;
    const auto area = box_area(anchors);
    for (int64_t i = 0; i < g; ++i) {
      const auto box = gt[i];
      const auto gcx = (box[0] + box[2]) / 2, gcy = (box[1] + box[3]) / 2;
      const auto dist = (acx - gcx).pow(2) + (acy - gcy).pow(2);
      auto near = std::get<1>(dist.topk(std::min(o.candidates * k, n), 0, /*largest=*/false));
      const auto ratio = area.index_select(0, near) / ((box[2] - box[0]) * (box[3] - box[1]));
      const auto kept = near.index_select(0, torch::nonzero((ratio < o.max_ratio) & (ratio > o.min_ratio)).view(-1));
      torch::Tensor chosen;
      if (kept.size(0) >= k) {
        chosen = kept.index_select(0, torch::randperm(kept.size(0), long_opts).narrow(0, 0, k));
      } else if (kept.size(0) > 0) {
        chosen = kept.index_select(0, torch::randint(kept.size(0), {k}, long_opts));
      } else {
        near = std::get<1>(dist.topk(std::min(5 * k, n), 0, false));
        chosen = near.index_select(0, torch::randint(near.size(0), {k}, long_opts));
      }
      pos.push_back(chosen);
      pos_gt.push_back(torch::full({k}, i, long_opts));
    }
  }
  BmcSample s;
  s.pos = pos.empty() ? torch::zeros({0}, long_opts) : torch::cat(pos);
  s.pos_gt = pos_gt.empty() ? torch::zeros({0}, long_opts) : torch::cat(pos_gt);
  auto free = targets == 0;
  if (s.pos.size(0) > 0) free.index_fill_(0, s.pos, false);
  const auto neg = torch::nonzero(free).view(-1);
  const int64_t want = std::max<int64_t>(num - s.pos.size(0), 0);
  s.neg = neg.size(0) <= want ? neg : neg.index_select(0, torch::randperm(neg.size(0), long_opts).narrow(0, 0, want));
  return s;
}

std::vector<Component> connected_components(const torch::Tensor& binary) {
  if (binary.dim() != 2) fail("connected_components: expected a map [H, W], got {}", binary.sizes());
  const auto m = binary.detach().to(torch::kCPU).ne(0).to(torch::kUInt8).contiguous();
  const int64_t h = m.size(0), w = m.size(1);
  const auto* px = m.data_ptr<uint8_t>();
  // Union-find over pixels, 8-connectivity; roots kept at the smallest (first in raster order) pixel.
  std::vector<int64_t> parent(static_cast<size_t>(h * w), -1);
  const auto find = [&](int64_t a) {
    while (parent[static_cast<size_t>(a)] != a) a = parent[static_cast<size_t>(a)] = parent[static_cast<size_t>(parent[static_cast<size_t>(a)])];
    return a;
  };
  const auto unite = [&](int64_t a, int64_t b) {
    a = find(a), b = find(b);
    if (a != b) parent[static_cast<size_t>(std::max(a, b))] = std::min(a, b);
  };
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c) {
      const int64_t p = r * w + c;
      if (!px[p]) continue;
      parent[static_cast<size_t>(p)] = p;
      const int64_t dr[4] = {0, -1, -1, -1}, dc[4] = {-1, -1, 0, 1};
      for (int q = 0; q < 4; ++q) {
        const int64_t rr = r + dr[q], cc = c + dc[q];
        if (rr >= 0 && cc >= 0 && cc < w && px[rr * w + cc]) unite(p, rr * w + cc);
      }
    }
  std::vector<int64_t> label(static_cast<size_t>(h * w), -1);
  std::vector<Component> out;
  std::vector<std::array<int64_t, 4>> ext;  // min x, min y, max x, max y
  for (int64_t p = 0; p < h * w; ++p) {
    if (!px[p]) continue;
    const int64_t root = find(p);
    auto& l = label[static_cast<size_t>(root)];
    if (l < 0) {  // the root is the component's first pixel in raster order
      l = static_cast<int64_t>(out.size());
      out.push_back({0, 0, 0, 0, 0});
      ext.push_back({w, h, -1, -1});
    }
    const int64_t r = p / w, c = p % w;
    auto& e = ext[static_cast<size_t>(l)];
    e = {std::min(e[0], c), std::min(e[1], r), std::max(e[2], c), std::max(e[3], r)};
    out[static_cast<size_t>(l)].area += 1;
  }
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = {ext[i][0], ext[i][1], ext[i][2] - ext[i][0] + 1, ext[i][3] - ext[i][1] + 1, out[i].area};
  return out;
}

std::pair<torch::Tensor, torch::Tensor> bm_conditioned_anchors(const torch::Tensor& objectness, const torch::Tensor& anchors,
                                                               int64_t stride, int64_t per_component, const ConditionedOptions& o) {
  if (objectness.dim() != 3) fail("bm_conditioned_anchors: expected objectness [A, h, w], got {}", objectness.sizes());
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(anchors.device());
  const int64_t a = objectness.size(0), w = objectness.size(2);
  const int64_t min_x = w / 20 + 1, max_x = w - min_x + 2;
  std::vector<Component> kept;
  const auto obj = objectness.detach().to(torch::kCPU, torch::kFloat);
  for (int64_t c = 0; c < a; ++c) {
    const auto m = obj[c];
    const auto lo = m.min(), hi = m.max();
    if ((hi - lo).item<float>() <= 0) continue;
    for (const auto& comp : connected_components((m - lo) / (hi - lo) > o.threshold))
      if (comp.area > o.min_area && comp.x > min_x && comp.y > min_x && comp.x < max_x && comp.y < max_x) kept.push_back(comp);
  }
  if (static_cast<int64_t>(kept.size()) > o.max_components) {
    const auto pick = torch::randperm(static_cast<int64_t>(kept.size()), torch::kLong).narrow(0, 0, o.max_components);
    std::vector<Component> sub;
    for (int64_t i = 0; i < o.max_components; ++i) sub.push_back(kept[static_cast<size_t>(pick[i].item<int64_t>())]);
    kept = std::move(sub);
  }
  const auto fo = anchors.options();
  if (kept.empty() || anchors.size(0) == 0) return {torch::zeros({0}, long_opts), torch::zeros({0, 4}, fo)};
  const auto acx = (anchors.select(1, 0) + anchors.select(1, 2)) / 2, acy = (anchors.select(1, 1) + anchors.select(1, 3)) / 2;
  const auto s = static_cast<double>(stride);
  std::vector<torch::Tensor> ids;
  std::vector<float> boxes;
  for (const auto& c : kept) {
    const double x = static_cast<double>(c.x) * s, y = static_cast<double>(c.y) * s, bw = static_cast<double>(c.w) * s,
                 bh = static_cast<double>(c.h) * s;
    const auto ddx = (acx - (x + bw / 2)).abs(), ddy = (acy - (y + bh / 2)).abs();
    const int64_t count = ((ddx < std::max(bw, o.min_window)) & (ddy < std::max(bh, o.min_window))).sum().item<int64_t>();
    const int64_t k = std::min(per_component, count);
    if (k > 0) ids.push_back(std::get<1>((ddx * ddx + ddy * ddy).topk(k, 0, /*largest=*/false)));
    for (double v : {x, y, x + bw, y + bh}) boxes.push_back(static_cast<float>(v));
  }
  const auto box_t = torch::tensor(boxes).view({-1, 4}).to(fo);
  return {ids.empty() ? torch::zeros({0}, long_opts) : torch::cat(ids), box_t};
}

}  // namespace facet::models::detection
