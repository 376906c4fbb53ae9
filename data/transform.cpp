#include "data/transform.h"

#include "data/batch_slots.h"
#include "data/pooled_memory.h"

#include <algorithm>

namespace facet::data {

TransformRegistry& transform_registry() {
  static TransformRegistry registry("transform", "transforms");
  return registry;
}

std::vector<std::shared_ptr<Transform>> build_transforms(const Config& list) {
  if (!list.is_list()) fail("{}: {}: expected a list of transforms", list.where(), list.prefix());
  std::vector<std::shared_ptr<Transform>> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(transform_registry().create(list.at(i)));
  return out;
}

namespace {

// transforms[begin, end): elementwise maps of float field `name`, applied to it in one pass.
void apply_elementwise(const std::vector<std::shared_ptr<Transform>>& transforms, size_t begin, size_t end,
                       const std::string& name, Sample& sample) {
  torch::Tensor& field = sample.fields[name];
  for (size_t i = begin; i < end; ++i) transforms[i]->check_elementwise(sample, field);
  const torch::Tensor in = field.contiguous();
  const bool final_values = std::any_of(transforms.begin() + static_cast<std::ptrdiff_t>(begin),
                                        transforms.begin() + static_cast<std::ptrdiff_t>(end),
                                        [](const auto& t) { return t->writes_batch_row(); });
  torch::Tensor out = final_values ? BatchSlots::output(name, in.sizes(), torch::kFloat)
                                   : pooled_empty(in.sizes(), torch::kFloat);
  const int64_t channels = in.dim() == 0 ? 1 : in.size(0), plane = channels == 0 ? 0 : in.numel() / channels;
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  constexpr int64_t kBlock = 4096;  // 16 KB: the block stays in L1 from one map to the next
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t at = 0; at < plane; at += kBlock) {
      const int64_t n = std::min(kBlock, plane - at), offset = c * plane + at;
      std::copy_n(src + offset, n, dst + offset);
      for (size_t i = begin; i < end; ++i) transforms[i]->map_values(dst + offset, n, c);
    }
  field = std::move(out);
}

}  // namespace

void apply_transforms(const std::vector<std::shared_ptr<Transform>>& transforms, Sample& sample, at::Generator& generator) {
  for (size_t i = 0; i < transforms.size();) {
    const std::string* name = transforms[i]->elementwise_field();
    const torch::Tensor* field = name != nullptr && sample.fields.contains(*name) ? &sample.fields.at(*name) : nullptr;
    if (field == nullptr || !field->defined() || field->scalar_type() != torch::kFloat || !field->is_cpu()) {
      transforms[i++]->apply(sample, generator);  // not a float field to map: the transform's own path
      continue;
    }
    size_t end = i + 1;
    while (end < transforms.size() && transforms[end]->elementwise_field() != nullptr &&
           *transforms[end]->elementwise_field() == *name)
      ++end;
    apply_elementwise(transforms, i, end, *name, sample);
    i = end;
  }
}

bool takes_eight_bit_images(const std::vector<std::shared_ptr<Transform>>& transforms) {
  for (const auto& t : transforms) {
    switch (t->eight_bit_image()) {
      case Transform::EightBit::keeps: continue;
      case Transform::EightBit::converts: return true;
      case Transform::EightBit::refuses: return false;
    }
  }
  return false;  // nothing converts: the images must reach the batch as float
}

namespace {
thread_local bool g_eight_bit_images = false;
thread_local KeptWindow* g_kept_window = nullptr;
}  // namespace

KeptWindow::KeptWindow(const Transform& first, const at::Generator& generator)
    : first_(first), generator_(generator), previous_(g_kept_window) {
  g_kept_window = this;
}
KeptWindow::~KeptWindow() { g_kept_window = previous_; }

cv::Rect KeptWindow::of(cv::Size size) {
  const cv::Rect all(0, 0, size.width, size.height);
  if (g_kept_window == nullptr) return all;
  at::Generator copy = g_kept_window->generator_.clone();  // the transform draws the same numbers later
  const std::optional<cv::Rect> window = g_kept_window->first_.image_window(size, copy);
  // A window outside the picture is the transform's error to report (on the whole picture).
  return window && (*window & all) == *window && !window->empty() ? *window : all;
}

EightBitImages::EightBitImages() : previous_(g_eight_bit_images) { g_eight_bit_images = true; }
EightBitImages::~EightBitImages() { g_eight_bit_images = previous_; }
bool EightBitImages::allowed() { return g_eight_bit_images; }

}  // namespace facet::data
