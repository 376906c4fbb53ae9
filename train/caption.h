// One caption line of a picture tile: a grey head, then coloured items, within the tile's width.
// Items after the first that do not fit are counted ("+2"), never cut off mid-name: a clipped
// "AU17" reads "AU1". (A first item wider than the tile, which wrapped text avoids, is cut.)
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <string>
#include <utility>
#include <vector>

namespace facet::train {

constexpr int kCaptionFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kCaptionScale = 0.38;

// Pixels `text` takes on a caption line.
inline int caption_width(const std::string& text) {
  int baseline = 0;
  return cv::getTextSize(text, kCaptionFont, kCaptionScale, 1, &baseline).width;
}

inline void put_caption(cv::Mat& canvas, int x, int y, int right, const std::string& head,
                        const std::vector<std::pair<std::string, cv::Scalar>>& items) {
  const cv::Scalar grey(200, 200, 200);
  if (!head.empty()) {
    cv::putText(canvas, head, {x, y}, kCaptionFont, kCaptionScale, grey, 1, cv::LINE_AA);
    x += caption_width(head) + 5;
  }
  const auto count = [](size_t n) { return cv::format("+%zu", n); };
  for (size_t k = 0; k < items.size(); ++k) {
    const auto& [text, colour] = items[k];
    // Room for this item, and for the "+N" of the rest unless it is the last.
    const int needed = caption_width(text) + (k + 1 < items.size() ? 5 + caption_width(count(items.size() - k - 1)) : 0);
    if (k > 0 && x + needed > right) {
      cv::putText(canvas, count(items.size() - k), {x, y}, kCaptionFont, kCaptionScale, grey, 1, cv::LINE_AA);
      return;
    }
    cv::putText(canvas, text, {x, y}, kCaptionFont, kCaptionScale, colour, 1, cv::LINE_AA);
    x += caption_width(text) + 5;
  }
}

}  // namespace facet::train
