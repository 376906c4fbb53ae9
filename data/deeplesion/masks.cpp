// GrabCut pseudo-masks from RECIST marks (deeplesion.h), as the SATr/A3D mask generator makes them.
#include "core/error.h"
#include "data/deeplesion/deeplesion.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace facet::data::deeplesion {

cv::Mat grabcut_mask(const cv::Mat& key, const std::array<double, 4>& box, const std::array<double, 8>& recist) {
  if (key.type() != CV_32FC1) fail("grabcut_mask: expected a float32 slice of stored values");
  // The generator's windowing, [-1024, 2050] HU -> [0, 255] - 50, then numpy's float -> uint8 cast:
  // truncation toward zero, negative values wrapping modulo 256.
  cv::Mat gray(key.size(), CV_8UC1);
  for (int y = 0; y < key.rows; ++y) {
    const float* in = key.ptr<float>(y);
    uchar* out = gray.ptr<uchar>(y);
    for (int x = 0; x < key.cols; ++x) {
      const double hu = static_cast<double>(in[x]) - kHuOffset;
      const double v = std::clamp((hu + 1024.0) / 3074.0, 0.0, 1.0) * 255.0 - 50.0;
      out[x] = static_cast<uchar>(static_cast<int>(std::trunc(v)) & 0xFF);
    }
  }
  cv::Mat image;
  cv::cvtColor(gray, image, cv::COLOR_GRAY2BGR);
  cv::Mat mask = cv::Mat::zeros(key.size(), CV_8UC1);  // GC_BGD everywhere else
  auto pt = [](double x, double y) { return cv::Point(static_cast<int>(x), static_cast<int>(y)); };  // numpy astype(int32)
  const std::vector<cv::Point> corners = {pt(box[0], box[1]), pt(box[2], box[1]), pt(box[2], box[3]), pt(box[0], box[3])};
  cv::fillConvexPoly(mask, corners, cv::Scalar(cv::GC_PR_FGD));
  // Endpoints in the CSV: long axis (0, 1), short axis (2, 3); around the quadrilateral: 0, 2, 1, 3.
  const std::vector<cv::Point> marks = {pt(recist[0], recist[1]), pt(recist[4], recist[5]), pt(recist[2], recist[3]),
                                        pt(recist[6], recist[7])};
  cv::fillConvexPoly(mask, marks, cv::Scalar(cv::GC_FGD));
  const cv::Mat initial = mask.clone();
  cv::Mat background, foreground;
  try {
    cv::grabCut(image, mask, cv::Rect(), background, foreground, 3, cv::GC_INIT_WITH_MASK);
  } catch (const cv::Exception&) {
    mask = initial;  // one of the two models has no pixels (a box covering the whole slice)
  }
  cv::Mat out = (mask == cv::GC_FGD) | (mask == cv::GC_PR_FGD);
  return out / 255;  // 0 / 1
}

}  // namespace facet::data::deeplesion
