#include "data/transform.h"

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
