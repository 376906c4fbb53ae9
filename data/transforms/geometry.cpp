#include "data/transforms/geometry.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <mutex>

namespace facet::data {

SpatialFields SpatialFields::from(const Config& c) {
  SpatialFields f;
  f.images = c.get<std::vector<std::string>>("fields", f.images);
  f.masks = c.get<std::vector<std::string>>("mask_fields", f.masks);
  return f;
}

double uniform(at::Generator& g, double lo, double hi) {
  return lo + (hi - lo) * torch::rand({1}, g, torch::TensorOptions().dtype(torch::kDouble)).item<double>();
}

int64_t random_below(at::Generator& g, int64_t n) {
  if (n <= 0) fail("random_below: expected a positive bound, got {}", n);
  auto* cpu = at::check_generator<at::CPUGeneratorImpl>(g);
  std::lock_guard<std::mutex> lock(cpu->mutex_);
  return at::uniform_int_from_to_distribution<int64_t>(static_cast<uint64_t>(n), 0)(cpu);
}

float random_unit(at::Generator& g) {
  auto* cpu = at::check_generator<at::CPUGeneratorImpl>(g);
  std::lock_guard<std::mutex> lock(cpu->mutex_);
  return static_cast<float>(at::uniform_real_distribution<float>(0.0f, 1.0f)(cpu));
}

namespace {

template <class Fn>
void for_each_field(Sample& s, const SpatialFields& fields, Fn&& fn) {
  for (const auto& name : fields.images)
    if (s.fields.contains(name)) fn(s.fields[name], false);
  for (const auto& name : fields.masks) {
    if (s.fields.contains(name)) fn(s.fields[name], true);
    if (s.ragged.contains(name)) fn(s.ragged[name], true);  // per-box masks [N, H, W]
  }
}

// Applies `op(src_plane, dst_plane)` to each [H, W] plane of a [C, H, W] (or [H, W]) tensor, as
// float32 cv::Mats viewing the tensors' memory. The result keeps the input's dtype.
template <class Op>
torch::Tensor per_plane(const torch::Tensor& field, cv::Size out, Op&& op) {
  const auto dtype = field.scalar_type();
  const torch::Tensor src = field.to(torch::kFloat).contiguous();
  const bool flat = src.dim() == 2;
  const torch::Tensor planes = flat ? src.unsqueeze(0) : src.reshape({-1, src.size(-2), src.size(-1)});
  torch::Tensor dst = torch::empty({planes.size(0), out.height, out.width}, torch::kFloat);
  for (int64_t c = 0; c < planes.size(0); ++c) {
    const cv::Mat in(static_cast<int>(planes.size(1)), static_cast<int>(planes.size(2)), CV_32F,
                     planes[c].data_ptr<float>());
    cv::Mat result(out, CV_32F, dst[c].data_ptr<float>());
    op(in, result);
    // OpenCV writes into `result` in place when size and type match, which they always do here.
    TORCH_INTERNAL_ASSERT(result.data == static_cast<uchar*>(dst[c].data_ptr()));
  }
  std::vector<int64_t> shape = src.sizes().vec();
  shape[shape.size() - 2] = out.height;
  shape[shape.size() - 1] = out.width;
  return dst.reshape(shape).to(dtype);
}

// cv::warpAffine addresses pixel centres at integers; ours are at integer + 0.5.
cv::Matx23d to_opencv(const cv::Matx23d& A) {
  cv::Matx23d M = A;
  for (int r = 0; r < 2; ++r) M(r, 2) = A(r, 2) + 0.5 * (A(r, 0) + A(r, 1)) - 0.5;
  return M;
}

}  // namespace

cv::Size spatial_size(const Sample& s, const SpatialFields& fields, std::string_view transform) {
  std::optional<cv::Size> size;
  std::string first;
  auto check = [&](const std::string& name) {
    const bool ragged = !s.fields.contains(name) && s.ragged.contains(name);
    if (!s.fields.contains(name) && !ragged) return;
    const auto& t = ragged ? s.ragged.at(name) : s.fields.at(name);
    if (t.dim() < 2) fail("{}: {}: field \"{}\" is not an image ([C, H, W])", s.id, transform, name);
    const cv::Size here(static_cast<int>(t.size(-1)), static_cast<int>(t.size(-2)));
    if (!size) {
      size = here;
      first = name;
    } else if (*size != here) {
      fail("{}: {}: field \"{}\" is {}x{} but \"{}\" is {}x{}", s.id, transform, name, here.height, here.width, first,
           size->height, size->width);
    }
  };
  for (const auto& n : fields.images) check(n);
  for (const auto& n : fields.masks) check(n);
  if (!size) fail("{}: {}: the sample has none of the fields {}", s.id, transform, join(fields.images));
  return *size;
}

namespace {

// Points [..., 2] (x, y) mapped by A: computed in double, rounded once to float. A loop, not
// tensor ops: a sample has a few boxes or landmarks, and a dozen dispatched ops on them cost more
// than a flip of the image (4 % of a radiograph loader's time).
torch::Tensor mapped_points(const torch::Tensor& points, const cv::Matx23d& A) {
  const torch::Tensor in = points.to(torch::kFloat).contiguous();
  torch::Tensor out = torch::empty_like(in);
  const float* p = in.data_ptr<float>();
  float* q = out.data_ptr<float>();
  for (int64_t i = 0, n = in.numel() / 2; i < n; ++i) {
    const double x = p[2 * i], y = p[2 * i + 1];
    q[2 * i] = static_cast<float>(A(0, 0) * x + A(0, 1) * y + A(0, 2));
    q[2 * i + 1] = static_cast<float>(A(1, 0) * x + A(1, 1) * y + A(1, 2));
  }
  return out;
}

}  // namespace

void map_geometry(Sample& s, const cv::Matx23d& A, cv::Size out, double min_box_size) {
  if (s.fields.contains("landmarks")) s.fields["landmarks"] = mapped_points(s.fields["landmarks"], A);
  check_per_box_fields(s, "geometric transform");  // before rows are dropped by position
  for (const auto& name : per_box_point_fields())
    if (s.ragged.contains(name) && s.ragged.at(name).numel() > 0) {
      if (s.ragged.at(name).size(-1) != 2) fail("{}: geometric transform: {} must be [N, K, 2] points, got {}", s.id, name, s.ragged.at(name).sizes());
      s.ragged[name] = mapped_points(s.ragged.at(name), A);
    }
  if (!s.ragged.contains("boxes") || s.ragged.at("boxes").numel() == 0) return;
  const torch::Tensor& given = s.ragged.at("boxes");
  if (given.dim() != 2 || given.size(1) != 4) fail("{}: geometric transform: boxes must be [N, 4], got {}", s.id, given.sizes());
  // The four corners of each box, mapped; the new box is their bounding box, clipped to the output.
  const torch::Tensor corners = mapped_points(given.index({torch::indexing::Slice(), torch::tensor({0, 1, 2, 1, 0, 3, 2, 3})}), A);
  const int64_t n = given.size(0);
  torch::Tensor boxes = torch::empty({n, 4});
  std::vector<uint8_t> keep(static_cast<size_t>(n));
  const float* c = corners.data_ptr<float>();
  float* b = boxes.data_ptr<float>();
  const float limit[2] = {static_cast<float>(out.width), static_cast<float>(out.height)};
  const auto min_size = static_cast<float>(min_box_size);
  bool all_kept = true;
  for (int64_t i = 0; i < n; ++i) {
    bool kept = true;
    for (int axis = 0; axis < 2; ++axis) {
      float lo = c[8 * i + axis], hi = lo;
      for (int k = 1; k < 4; ++k) {
        lo = std::min(lo, c[8 * i + 2 * k + axis]);
        hi = std::max(hi, c[8 * i + 2 * k + axis]);
      }
      lo = std::min(std::max(lo, 0.0f), limit[axis]);
      hi = std::min(std::max(hi, 0.0f), limit[axis]);
      b[4 * i + axis] = lo;
      b[4 * i + 2 + axis] = hi;
      kept = kept && hi - lo >= min_size;
    }
    keep[static_cast<size_t>(i)] = kept;
    all_kept = all_kept && kept;
  }
  if (!all_kept) {
    const torch::Tensor rows = torch::from_blob(keep.data(), {n}, torch::kUInt8).to(torch::kBool);
    boxes = boxes.index({rows});
    for (auto& [name, t] : s.ragged)
      if (is_per_box(name)) t = t.index({rows});
  }
  s.ragged["boxes"] = boxes;
}

void warp_fields(Sample& s, const SpatialFields& fields, const cv::Matx23d& A, cv::Size out, double fill, int border,
                 int interpolation) {
  const cv::Matx23d M = to_opencv(A);
  for_each_field(s, fields, [&](torch::Tensor& field, bool is_mask) {
    field = per_plane(field, out, [&](const cv::Mat& in, cv::Mat& dst) {
      cv::warpAffine(in, dst, M, out, is_mask ? cv::INTER_NEAREST : interpolation,
                     is_mask ? cv::BORDER_CONSTANT : border, cv::Scalar(is_mask ? 0.0 : fill));
    });
  });
}

void resize_fields(Sample& s, const SpatialFields& fields, cv::Size out) {
  for_each_field(s, fields, [&](torch::Tensor& field, bool is_mask) {
    const bool shrink = out.width < field.size(-1) || out.height < field.size(-2);
    const int interpolation = is_mask ? cv::INTER_NEAREST : shrink ? cv::INTER_AREA : cv::INTER_LINEAR;
    field = per_plane(field, out, [&](const cv::Mat& in, cv::Mat& dst) { cv::resize(in, dst, out, 0, 0, interpolation); });
  });
}

void crop_fields(Sample& s, const SpatialFields& fields, cv::Rect window, double fill) {
  for_each_field(s, fields, [&](torch::Tensor& field, bool is_mask) {
    const cv::Rect image(0, 0, static_cast<int>(field.size(-1)), static_cast<int>(field.size(-2)));
    const cv::Rect inside = window & image;
    if (inside == window) {  // the common case: a view, no copy (the next op or the collate copies it once)
      field = field.narrow(-2, window.y, window.height).narrow(-1, window.x, window.width);
      return;
    }
    std::vector<int64_t> shape = field.sizes().vec();
    shape[shape.size() - 2] = window.height;
    shape[shape.size() - 1] = window.width;
    torch::Tensor out = torch::full(shape, is_mask ? 0.0 : fill, field.options());
    if (!inside.empty())
      out.narrow(-2, inside.y - window.y, inside.height)
          .narrow(-1, inside.x - window.x, inside.width)
          .copy_(field.narrow(-2, inside.y, inside.height).narrow(-1, inside.x, inside.width));
    field = out;
  });
}

std::vector<int64_t> face_landmark_mirror(int64_t num_points) {
  // 68-point scheme, 0-based: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lip 48-59,
  // inner lip 60-67.
  std::vector<int64_t> m68(68);
  for (int64_t i = 0; i < 68; ++i) m68[static_cast<size_t>(i)] = i;
  auto swap = [&](int64_t a, int64_t b) {
    m68[static_cast<size_t>(a)] = b;
    m68[static_cast<size_t>(b)] = a;
  };
  for (int64_t i = 0; i < 8; ++i) swap(i, 16 - i);        // jaw
  for (int64_t i = 0; i < 5; ++i) swap(17 + i, 26 - i);   // brows
  swap(31, 35), swap(32, 34);                             // nose base
  swap(36, 45), swap(37, 44), swap(38, 43), swap(39, 42), swap(40, 47), swap(41, 46);  // eyes
  swap(48, 54), swap(49, 53), swap(50, 52), swap(55, 59), swap(56, 58);                // outer lip
  swap(60, 64), swap(61, 63), swap(65, 67);                                            // inner lip
  if (num_points == 68) return m68;
  // The reduced schemes keep a subset of the 68 points in order; mirror within it.
  std::vector<int64_t> kept;
  if (num_points == 66) {
    for (int64_t i = 0; i < 68; ++i)
      if (i != 60 && i != 64) kept.push_back(i);
  } else if (num_points == 49) {
    for (int64_t i = 17; i < 68; ++i)
      if (i != 60 && i != 64) kept.push_back(i);
  } else {
    fail("no built-in left-right landmark mirror for {} points (68, 66 and 49 are known); give "
         "landmark_mirror: [...] explicitly",
         num_points);
  }
  std::vector<int64_t> position(68, -1), out;
  for (size_t i = 0; i < kept.size(); ++i) position[static_cast<size_t>(kept[i])] = static_cast<int64_t>(i);
  for (const int64_t k : kept) out.push_back(position[static_cast<size_t>(m68[static_cast<size_t>(k)])]);
  return out;
}

}  // namespace facet::data
