#include "models/detection/ops.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>

namespace facet::models::detection {

namespace idx = torch::indexing;

torch::Tensor box_area(const torch::Tensor& boxes) {
  return (boxes.select(1, 2) - boxes.select(1, 0)) * (boxes.select(1, 3) - boxes.select(1, 1));
}

torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.dim() != 2 || a.size(1) != 4 || b.dim() != 2 || b.size(1) != 4)
    fail("box_iou: expected [N, 4] and [M, 4] boxes, got {} and {}", a.sizes(), b.sizes());
  const auto lt = torch::max(a.unsqueeze(1).narrow(2, 0, 2), b.unsqueeze(0).narrow(2, 0, 2));
  const auto rb = torch::min(a.unsqueeze(1).narrow(2, 2, 2), b.unsqueeze(0).narrow(2, 2, 2));
  const auto wh = (rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto uni = box_area(a).unsqueeze(1) + box_area(b).unsqueeze(0) - inter;
  return torch::where(uni > 0, inter / uni, torch::zeros_like(inter));
}

torch::Tensor clip_boxes(const torch::Tensor& boxes, int64_t height, int64_t width) {
  const auto x = boxes.index({"...", idx::Slice(0, idx::None, 2)}).clamp(0, static_cast<double>(width));
  const auto y = boxes.index({"...", idx::Slice(1, idx::None, 2)}).clamp(0, static_cast<double>(height));
  return torch::stack({x.select(-1, 0), y.select(-1, 0), x.select(-1, 1), y.select(-1, 1)}, -1);
}

torch::Tensor remove_small_boxes(const torch::Tensor& boxes, double min_size) {
  const auto w = boxes.select(1, 2) - boxes.select(1, 0), h = boxes.select(1, 3) - boxes.select(1, 1);
  return torch::nonzero((w >= min_size) & (h >= min_size)).view(-1);
}

// --- box coding ------------------------------------------------------------------------------------

namespace {
torch::Tensor as_tensor(const std::array<double, 4>& v, const torch::Tensor& like) {
  return torch::tensor({v[0], v[1], v[2], v[3]}, torch::kDouble).to(like.device(), like.scalar_type());
}
}  // namespace

torch::Tensor BoxCoder::encode(const torch::Tensor& proposals, const torch::Tensor& targets) const {
  const auto pw = proposals.select(1, 2) - proposals.select(1, 0), ph = proposals.select(1, 3) - proposals.select(1, 1);
  const auto px = proposals.select(1, 0) + 0.5 * pw, py = proposals.select(1, 1) + 0.5 * ph;
  const auto gw = targets.select(1, 2) - targets.select(1, 0), gh = targets.select(1, 3) - targets.select(1, 1);
  const auto gx = targets.select(1, 0) + 0.5 * gw, gy = targets.select(1, 1) + 0.5 * gh;
  const auto d = torch::stack({(gx - px) / pw, (gy - py) / ph, torch::log(gw / pw), torch::log(gh / ph)}, 1);
  return (d - as_tensor(means, d)) / as_tensor(stds, d);
}

torch::Tensor BoxCoder::decode(const torch::Tensor& rois, const torch::Tensor& deltas) const {
  const int64_t n = rois.size(0);
  if (deltas.size(0) != n || deltas.size(-1) % 4 != 0)
    fail("BoxCoder::decode: {} rois with deltas {}", n, deltas.sizes());
  const int64_t k = deltas.size(-1) / 4;  // explicit: -1 is ambiguous when there are no rois
  const auto d = deltas.reshape({n, k, 4}) * as_tensor(stds, deltas) + as_tensor(means, deltas);
  const auto pw = (rois.select(1, 2) - rois.select(1, 0)).unsqueeze(1), ph = (rois.select(1, 3) - rois.select(1, 1)).unsqueeze(1);
  const auto px = rois.select(1, 0).unsqueeze(1) + 0.5 * pw, py = rois.select(1, 1).unsqueeze(1) + 0.5 * ph;
  const auto dw = d.select(2, 2).clamp(-wh_clamp, wh_clamp), dh = d.select(2, 3).clamp(-wh_clamp, wh_clamp);
  const auto gx = px + pw * d.select(2, 0), gy = py + ph * d.select(2, 1);
  const auto gw = pw * torch::exp(dw), gh = ph * torch::exp(dh);
  return torch::stack({gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh}, 2).reshape({n, 4 * k});
}

// --- NMS -------------------------------------------------------------------------------------------

namespace {
void check_nms_inputs(const torch::Tensor& boxes, const torch::Tensor& scores) {
  if (boxes.dim() != 2 || boxes.size(1) != 4 || scores.dim() != 1 || scores.size(0) != boxes.size(0))
    fail("nms: expected boxes [N, 4] and scores [N], got {} and {}", boxes.sizes(), scores.sizes());
}
}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold, int64_t max_keep) {
  check_nms_inputs(boxes, scores);
  const int64_t n = boxes.size(0);
  if (n == 0) return torch::empty({0}, torch::TensorOptions().dtype(torch::kLong).device(boxes.device()));
  if (!boxes.device().is_cpu()) return nms_blocked(boxes, scores, iou_threshold, max_keep);
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order);
  {
    // On the CPU a scalar greedy pass (torchvision's CPU kernel's arithmetic) beats IoU matrices:
    // each kept box is compared only with the boxes still alive after it.
    const auto b = sorted.contiguous();
    std::vector<int64_t> keep;
    AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms", [&] {
      const scalar_t* p = b.data_ptr<scalar_t>();
      std::vector<scalar_t> area(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) area[static_cast<size_t>(i)] = (p[4 * i + 2] - p[4 * i]) * (p[4 * i + 3] - p[4 * i + 1]);
      std::vector<uint8_t> removed(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        if (removed[static_cast<size_t>(i)]) continue;
        keep.push_back(i);
        if (max_keep > 0 && static_cast<int64_t>(keep.size()) >= max_keep) break;
        const scalar_t* a = p + 4 * i;
        for (int64_t j = i + 1; j < n; ++j) {
          if (removed[static_cast<size_t>(j)]) continue;
          const scalar_t* c = p + 4 * j;
          const scalar_t w = std::max<scalar_t>(0, std::min(a[2], c[2]) - std::max(a[0], c[0]));
          const scalar_t h = std::max<scalar_t>(0, std::min(a[3], c[3]) - std::max(a[1], c[1]));
          const scalar_t inter = w * h;
          if (inter / (area[static_cast<size_t>(i)] + area[static_cast<size_t>(j)] - inter) > iou_threshold) removed[static_cast<size_t>(j)] = 1;
        }
      }
    });
    return order.index_select(0, torch::tensor(keep, torch::kLong));
  }
}

torch::Tensor nms_blocked(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold, int64_t max_keep) {
  check_nms_inputs(boxes, scores);
  const int64_t n = boxes.size(0);
  if (n == 0) return torch::empty({0}, torch::TensorOptions().dtype(torch::kLong).device(boxes.device()));
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order);
  // Blocks of the score order: IoU against the boxes kept so far and within the block on the device;
  // the greedy pass over the block's suppression matrix on the host. Memory stays O(block x kept).
  constexpr int64_t kBlock = 1024;
  std::vector<int64_t> keep;
  torch::Tensor kept_boxes;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    const auto block = sorted.narrow(0, start, len);
    torch::Tensor alive = torch::ones({len}, torch::TensorOptions().dtype(torch::kBool).device(boxes.device()));
    if (kept_boxes.defined() && kept_boxes.size(0) > 0)
      alive = (box_iou(block, kept_boxes) > iou_threshold).any(1).logical_not();
    const auto suppress = (box_iou(block, block) > iou_threshold).to(torch::kCPU).contiguous();
    const auto alive_cpu = alive.to(torch::kCPU).contiguous();
    std::vector<uint8_t> removed(static_cast<size_t>(len));
    const bool* a = alive_cpu.data_ptr<bool>();
    const bool* s = suppress.data_ptr<bool>();
    for (int64_t i = 0; i < len; ++i) removed[static_cast<size_t>(i)] = !a[i];
    std::vector<int64_t> new_keep;
    for (int64_t i = 0; i < len; ++i) {
      if (removed[static_cast<size_t>(i)]) continue;
      new_keep.push_back(start + i);
      if (max_keep > 0 && static_cast<int64_t>(keep.size() + new_keep.size()) >= max_keep) break;
      const bool* row = s + i * len;
      for (int64_t j = i + 1; j < len; ++j) removed[static_cast<size_t>(j)] |= static_cast<uint8_t>(row[j]);
    }
    if (!new_keep.empty()) {
      const auto positions = torch::tensor(new_keep, torch::kLong).to(boxes.device());
      const auto added = sorted.index_select(0, positions);
      kept_boxes = kept_boxes.defined() ? torch::cat({kept_boxes, added}) : added;
      keep.insert(keep.end(), new_keep.begin(), new_keep.end());
    }
    if (max_keep > 0 && static_cast<int64_t>(keep.size()) >= max_keep) break;
  }
  return order.index_select(0, torch::tensor(keep, torch::kLong).to(boxes.device()));
}

torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& idxs,
                          double iou_threshold, int64_t max_keep) {
  if (boxes.size(0) == 0) return torch::empty({0}, torch::TensorOptions().dtype(torch::kLong).device(boxes.device()));
  // Groups moved apart by more than the largest coordinate never overlap (torchvision's trick).
  const auto offsets = idxs.to(boxes.scalar_type()) * (boxes.max() + 1);
  return nms(boxes + offsets.unsqueeze(1), scores, iou_threshold, max_keep);
}

// --- RoIAlign --------------------------------------------------------------------------------------

namespace {

// Sample coordinates along one axis and their bilinear corners, as torchvision's
// bilinear_interpolate: samples outside [-1, size] weigh nothing; others clamp at the border.
struct Axis {
  torch::Tensor low, high;  // int64 [K, P, G]
  torch::Tensor w_low, w_high;  // [K, P, G], zero for samples outside or past the RoI's grid
};

Axis sample_axis(const torch::Tensor& start, const torch::Tensor& bin, const torch::Tensor& grid, int64_t bins,
                 int64_t max_grid, int64_t size) {
  const auto opts = start.options();
  const auto p = torch::arange(bins, opts).view({1, bins, 1});
  const auto g = torch::arange(max_grid, opts).view({1, 1, max_grid});
  const auto gk = grid.view({-1, 1, 1});
  auto c = start.view({-1, 1, 1}) + p * bin.view({-1, 1, 1}) + (g + 0.5) * bin.view({-1, 1, 1}) / gk.clamp_min(1);
  const auto inside = (c >= -1.0) & (c <= static_cast<double>(size)) & (g < gk);
  c = c.clamp_min(0);
  auto low = c.floor().to(torch::kLong);
  const auto at_edge = low >= size - 1;
  low = torch::where(at_edge, torch::full_like(low, size - 1), low);
  const auto high = torch::where(at_edge, low, low + 1);
  c = torch::where(at_edge, low.to(c.scalar_type()), c);
  const auto l = c - low.to(c.scalar_type());
  const auto zero = torch::zeros_like(l);
  return {low, high, torch::where(inside, 1 - l, zero), torch::where(inside, l, zero)};
}

}  // namespace

torch::Tensor roi_align(const torch::Tensor& input, const torch::Tensor& rois, const RoIAlignOptions& o) {
  if (input.dim() != 4) fail("roi_align: expected input [N, C, H, W], got {}", input.sizes());
  if (rois.dim() != 2 || rois.size(1) != 5) fail("roi_align: expected rois [K, 5] (batch index, x1, y1, x2, y2), got {}", rois.sizes());
  if (o.output_h < 1 || o.output_w < 1) fail("roi_align: output size must be positive, got {}x{}", o.output_h, o.output_w);
  const int64_t c = input.size(1), h = input.size(2), w = input.size(3), k = rois.size(0);
  const int64_t ph = o.output_h, pw = o.output_w;
  if (k == 0) return torch::zeros({0, c, ph, pw}, input.options());
  const auto r = rois.to(input.scalar_type());
  const double offset = o.aligned ? 0.5 : 0.0;
  const auto x1 = r.select(1, 1) * o.spatial_scale - offset, y1 = r.select(1, 2) * o.spatial_scale - offset;
  auto rw = r.select(1, 3) * o.spatial_scale - offset - x1, rh = r.select(1, 4) * o.spatial_scale - offset - y1;
  if (!o.aligned) {  // legacy: RoIs at least one pixel
    rw = rw.clamp_min(1.0);
    rh = rh.clamp_min(1.0);
  }
  const auto bin_w = rw / static_cast<double>(pw), bin_h = rh / static_cast<double>(ph);
  torch::Tensor grid_w, grid_h;
  int64_t max_gw = o.sampling_ratio, max_gh = o.sampling_ratio;
  if (o.sampling_ratio > 0) {
    grid_w = torch::full({k}, static_cast<double>(o.sampling_ratio), r.options());
    grid_h = grid_w;
  } else {
    // A RoI of non-positive size samples nothing (its bins are 0), as in torchvision.
    grid_w = torch::ceil(rw / static_cast<double>(pw)).clamp_min(0);
    grid_h = torch::ceil(rh / static_cast<double>(ph)).clamp_min(0);
    max_gw = std::max<int64_t>(1, grid_w.max().item<int64_t>());
    max_gh = std::max<int64_t>(1, grid_h.max().item<int64_t>());
  }
  const Axis ya = sample_axis(y1, bin_h, grid_h, ph, max_gh, h);
  const Axis xa = sample_axis(x1, bin_w, grid_w, pw, max_gw, w);
  const auto batch = r.select(1, 0).to(torch::kLong).view({k, 1, 1, 1, 1}) * (h * w);
  const auto flat = input.permute({0, 2, 3, 1}).reshape({-1, c});  // [N H W, C]
  auto yv = [&](const torch::Tensor& t) { return t.view({k, ph, max_gh, 1, 1}); };
  auto xv = [&](const torch::Tensor& t) { return t.view({k, 1, 1, pw, max_gw}); };
  torch::Tensor sum;
  for (const auto* yc : {&ya.low, &ya.high})
    for (const auto* xc : {&xa.low, &xa.high}) {
      const auto& wy = yc == &ya.low ? ya.w_low : ya.w_high;
      const auto& wx = xc == &xa.low ? xa.w_low : xa.w_high;
      const auto index = (batch + yv(*yc) * w + xv(*xc)).reshape({-1});
      const auto weight = (yv(wy) * xv(wx)).reshape({-1, 1});
      const auto v = flat.index_select(0, index) * weight;
      sum = sum.defined() ? sum + v : v;
    }
  // [K, PH, GH, PW, GW, C] -> mean over each bin's samples.
  const auto count = (grid_h * grid_w).clamp_min(1).view({k, 1, 1, 1});
  const auto pooled = sum.view({k, ph, max_gh, pw, max_gw, c}).sum({2, 4}) / count;
  return pooled.permute({0, 3, 1, 2}).contiguous();
}

// --- anchors ---------------------------------------------------------------------------------------

AnchorGenerator::AnchorGenerator(AnchorGeneratorOptions options) : options_(std::move(options)) {
  if (options_.strides.empty()) fail("anchor generator: no strides");
  if (options_.base_sizes.empty())
    for (auto s : options_.strides) options_.base_sizes.push_back(static_cast<double>(s));
  if (options_.base_sizes.size() != options_.strides.size())
    fail("anchor generator: {} base sizes for {} strides", options_.base_sizes.size(), options_.strides.size());
  if (options_.scales.empty() || options_.ratios.empty()) fail("anchor generator: scales and ratios must not be empty");
}

torch::Tensor AnchorGenerator::base_anchors(size_t level) const {
  const double base = options_.base_sizes.at(level);
  const auto ratios = torch::tensor(options_.ratios, torch::kDouble), scales = torch::tensor(options_.scales, torch::kDouble);
  const auto h_ratios = ratios.sqrt(), w_ratios = 1 / h_ratios;
  const auto ws = (base * w_ratios.unsqueeze(1) * scales.unsqueeze(0)).reshape({-1});
  const auto hs = (base * h_ratios.unsqueeze(1) * scales.unsqueeze(0)).reshape({-1});
  const double c = options_.center_offset * base;
  auto a = torch::stack({c - 0.5 * ws, c - 0.5 * hs, c + 0.5 * ws, c + 0.5 * hs}, 1);
  if (options_.round) a = a.round();
  return a.to(torch::kFloat);
}

torch::Tensor AnchorGenerator::grid_anchors(size_t level, int64_t height, int64_t width, const torch::Device& device) const {
  const auto stride = static_cast<double>(options_.strides.at(level));
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const auto sx = torch::arange(width, opts) * stride, sy = torch::arange(height, opts) * stride;
  const auto yy = sy.view({-1, 1}).expand({height, width}).reshape({-1});
  const auto xx = sx.view({1, -1}).expand({height, width}).reshape({-1});
  const auto shifts = torch::stack({xx, yy, xx, yy}, 1);
  return (shifts.unsqueeze(1) + base_anchors(level).to(device).unsqueeze(0)).reshape({-1, 4});
}

// --- assignment and sampling -----------------------------------------------------------------------

Assignment assign_max_iou(const torch::Tensor& boxes, const torch::Tensor& gt_boxes, const MaxIoUAssignerOptions& o) {
  const int64_t n = boxes.size(0), g = gt_boxes.size(0);
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(boxes.device());
  Assignment out;
  if (g == 0 || n == 0) {
    out.gt_index = torch::zeros({n}, long_opts);
    out.max_overlap = torch::zeros({n}, boxes.options());
    return out;
  }
  const auto overlaps = box_iou(gt_boxes, boxes);  // [G, N]
  const auto [max_overlap, argmax] = overlaps.max(0);
  auto assigned = torch::full({n}, -1, long_opts);
  assigned.masked_fill_((max_overlap >= o.neg_min) & (max_overlap < o.neg_iou), 0);
  const auto pos = max_overlap >= o.pos_iou;
  assigned = torch::where(pos, argmax + 1, assigned);
  if (o.match_low_quality) {
    const auto [gt_max, gt_argmax] = overlaps.max(1);
    const auto gt_max_cpu = gt_max.to(torch::kCPU);
    for (int64_t i = 0; i < g; ++i) {  // in order: a later ground truth wins a shared box (mmdet)
      const double best = gt_max_cpu[i].item<double>();
      if (best < o.min_pos_iou) continue;
      if (o.gt_max_assign_all) assigned.masked_fill_(overlaps[i] == gt_max[i], i + 1);
      else assigned.index_put_({gt_argmax[i]}, i + 1);
    }
  }
  out.gt_index = assigned;
  out.max_overlap = max_overlap;
  return out;
}

namespace {
torch::Tensor choose(const torch::Tensor& candidates, int64_t n) {
  if (candidates.size(0) <= n) return candidates;
  return candidates.index_select(0, torch::randperm(candidates.size(0), candidates.options()).narrow(0, 0, n));
}
}  // namespace

Sample sample_random(const torch::Tensor& gt_index, const SamplerOptions& o) {
  const auto pos = torch::nonzero(gt_index > 0).view(-1);
  const auto chosen_pos = choose(pos, static_cast<int64_t>(static_cast<double>(o.num) * o.pos_fraction));
  const auto neg = torch::nonzero(gt_index == 0).view(-1);
  return {chosen_pos, choose(neg, o.num - chosen_pos.size(0))};
}

}  // namespace facet::models::detection
