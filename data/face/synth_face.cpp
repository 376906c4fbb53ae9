#include "data/face/synth_face.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>

namespace facet::data::face {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kSuper = 2;   // render at 2x and area-downsample: sub-pixel feature motion stays visible
constexpr int kShift = 4;   // OpenCV fixed-point bits for sub-pixel drawing

struct Prototype {
  Expression expression;
  std::vector<std::pair<int, double>> aus;  // AU, probability of occurring when the expression shows
};

const std::vector<Prototype>& prototypes() {
  // Common FACS descriptions of the prototypical expressions (EMFACS-like), plus the BP4D tasks.
  static const std::vector<Prototype> p = {
      {Expression::kNeutral, {}},
      {Expression::kHappy, {{6, 0.8}, {7, 0.4}, {10, 0.5}, {12, 0.95}, {14, 0.3}, {25, 0.6}}},
      {Expression::kSad, {{1, 0.8}, {4, 0.6}, {15, 0.85}, {17, 0.6}}},
      {Expression::kSurprise, {{1, 0.9}, {2, 0.9}, {5, 0.6}, {25, 0.8}, {26, 0.7}}},
      {Expression::kEmbarrassment, {{12, 0.7}, {14, 0.6}, {17, 0.4}, {24, 0.5}}},
      {Expression::kFear, {{1, 0.8}, {2, 0.6}, {4, 0.6}, {5, 0.5}, {20, 0.6}, {25, 0.7}}},
      {Expression::kPain, {{4, 0.8}, {6, 0.7}, {7, 0.8}, {9, 0.5}, {10, 0.6}, {25, 0.4}}},
      {Expression::kAnger, {{4, 0.9}, {7, 0.7}, {17, 0.4}, {23, 0.7}, {24, 0.6}}},
      {Expression::kDisgust, {{4, 0.4}, {9, 0.8}, {10, 0.8}, {15, 0.4}, {17, 0.5}}},
  };
  return p;
}

}  // namespace

FaceIdentity random_identity(SynthRng& rng, int size) {
  FaceIdentity id;
  const double n = size;
  const double tone = rng.uniform();  // dark to light skin
  id.skin = cv::Scalar(60 + 130 * tone + rng.uniform(-10, 10), 80 + 120 * tone + rng.uniform(-10, 10),
                       120 + 110 * tone + rng.uniform(-10, 10));
  const double hair = rng.uniform(15, 90);
  id.brow = cv::Scalar(hair * 0.8, hair * 0.9, hair);
  id.lip = cv::Scalar(70 + 40 * tone, 60 + 50 * tone, 140 + 60 * tone);
  const double bg = rng.uniform(40, 200);
  id.background = cv::Scalar(bg + rng.uniform(-25, 25), bg + rng.uniform(-25, 25), bg + rng.uniform(-25, 25));
  id.half_width = n * rng.uniform(0.28, 0.35);
  id.cx = n * (0.5 + rng.uniform(-0.06, 0.06));
  id.cy = n * (0.5 + rng.uniform(-0.04, 0.06));
  id.eye_spread = rng.uniform(0.92, 1.08);
  id.mouth_width = rng.uniform(0.9, 1.1);
  return id;
}

std::map<int, int> sample_intensities(SynthRng& rng, Expression expression, const std::vector<int>& coded, double show,
                                      bool traces) {
  std::map<int, int> out;
  auto is_coded = [&](int au) { return std::find(coded.begin(), coded.end(), au) != coded.end(); };
  if (rng.chance(show))
    for (const auto& [au, p] : prototypes().at(static_cast<size_t>(expression)).aus)
      if (rng.chance(p)) out[au] = static_cast<int>(rng.integer(2, 5));
  for (int au : coded) {
    if (out.count(au)) continue;
    if (rng.chance(0.05)) out[au] = static_cast<int>(rng.integer(2, 4));
    else if (traces && rng.chance(0.12)) out[au] = 1;
  }
  // Only coded AUs are drawn: an uncoded one would change pixels without a label to explain them.
  for (auto it = out.begin(); it != out.end();) it = is_coded(it->first) ? std::next(it) : out.erase(it);
  return out;
}

std::vector<cv::Point2f> draw_face(cv::Mat& image, const FaceIdentity& id, const std::map<int, int>& intensities,
                                   SynthRng& rng) {
  auto a = [&](int au) {
    auto it = intensities.find(au);
    return it == intensities.end() ? 0.0 : std::clamp(it->second, 0, 5) / 5.0;
  };
  const double a1 = a(1), a2 = a(2), a4 = a(4), a5 = a(5), a6 = a(6), a7 = a(7), a9 = a(9), a10 = a(10), a12 = a(12),
               a14 = a(14), a15 = a(15), a17 = a(17), a20 = a(20), a23 = a(23), a24 = a(24), a25 = a(25), a26 = a(26);

  // The face model in units of the face half-width, origin at the face centre, y down; the
  // subject's right side is the image's left, as in iBUG's numbering.
  std::array<cv::Point2d, 68> p;
  for (int i = 0; i <= 16; ++i) {  // jaw, ear level to ear level through the chin
    const double phi = kPi * i / 16.0, s = std::sin(phi);
    p[static_cast<size_t>(i)] = {-std::cos(phi), -0.1 + 1.15 * s + (0.2 * a26 - 0.05 * a17) * std::pow(s, 4)};
  }
  for (int k = 0; k < 5; ++k) {  // brows: 17..21 outer->inner (right), 22..26 inner->outer (left)
    const double inner = k / 4.0, outer = 1.0 - inner;
    const double u = (0.80 - 0.14 * k) * id.eye_spread - 0.06 * a4 * inner;
    const double v = -0.52 - 0.06 * std::sin(kPi * (k + 0.5) / 5.0) - 0.18 * a1 * std::pow(inner, 1.5) -
                     0.18 * a2 * std::pow(outer, 1.5) + 0.11 * a4 * (0.4 + 0.6 * inner);
    p[static_cast<size_t>(17 + k)] = {-u, v};
    p[static_cast<size_t>(26 - k)] = {u, v};
  }
  const std::array<double, 4> bridge = {-0.3, -0.17, -0.04, 0.09};
  for (int k = 0; k < 4; ++k) p[static_cast<size_t>(27 + k)] = {0, bridge[static_cast<size_t>(k)]};
  const std::array<double, 5> base_u = {-0.16, -0.08, 0, 0.08, 0.16}, base_v = {0.2, 0.23, 0.25, 0.23, 0.2};
  for (int k = 0; k < 5; ++k)
    p[static_cast<size_t>(31 + k)] = {base_u[static_cast<size_t>(k)], base_v[static_cast<size_t>(k)] - 0.07 * a9};
  // Eyes: opening above and below the corner line; AU5 widens, AU6 lifts the lower lid, AU7 narrows both.
  const double up = std::max(0.015, 0.09 + 0.05 * a5 - 0.03 * a6 - 0.055 * a7);
  const double lo = std::max(0.01, 0.065 - 0.05 * a6 - 0.03 * a7);
  for (int side = 0; side < 2; ++side) {
    const double c = 0.42 * id.eye_spread, v = -0.28;
    const size_t b = side == 0 ? 36 : 42;
    // right eye 36 outer, 37-38 upper, 39 inner, 40-41 lower; left eye 42 inner ... 45 outer
    const std::array<cv::Point2d, 6> right = {{{-c - 0.17, v}, {-c - 0.06, v - up}, {-c + 0.06, v - up}, {-c + 0.17, v},
                                               {-c + 0.06, v + lo}, {-c - 0.06, v + lo}}};
    if (side == 0) {
      for (size_t k = 0; k < 6; ++k) p[b + k] = right[k];
    } else {  // mirrored, keeping iBUG's clockwise order from the inner corner
      const std::array<size_t, 6> mirror = {3, 2, 1, 0, 5, 4};
      for (size_t k = 0; k < 6; ++k) p[b + k] = {-right[mirror[k]].x, right[mirror[k]].y};
    }
  }
  // Mouth: outer 48..59 (corner 48 right, 54 left), inner 60..67.
  const double mw = id.mouth_width * (1.0 - 0.3 * a23 - 0.12 * a14 + 0.12 * a20);
  const double corner_dv = -0.13 * a12 + 0.11 * a15, corner_du = 0.06 * a12 - 0.02 * a15;
  const double upper_lift = 0.09 * a10 + 0.03 * a9;  // AU10 (and AU9) raise the upper lip
  const double thin = 1.0 - 0.6 * a24 - 0.35 * a23;   // AU24 presses the lips thin, AU23 tightens them
  const double part = 0.06 * a25 + 0.16 * a26;        // AU25 parts the lips, AU26 drops the jaw
  auto mouth = [&](double u, double v, double cornerness) {
    return cv::Point2d{u * (mw + corner_du * cornerness), v + corner_dv * cornerness};
  };
  const double mv = 0.6;
  p[48] = mouth(-0.38, mv, 1);
  p[54] = mouth(0.38, mv, 1);
  const std::array<double, 5> ou = {-0.25, -0.1, 0, 0.1, 0.25};
  const std::array<double, 5> ov = {-0.05, -0.08, -0.065, -0.08, -0.05};
  for (size_t k = 0; k < 5; ++k) {  // 49..53 upper outer, left to right in the image
    const double cornerness = k == 0 || k == 4 ? 0.5 : 0.1;
    p[49 + k] = mouth(ou[k], mv + ov[k] * thin - upper_lift * (1 - 0.4 * cornerness), cornerness);
  }
  for (size_t k = 0; k < 5; ++k) {  // 55..59 lower outer, right to left in the image
    const double u = ou[4 - k], cornerness = k == 0 || k == 4 ? 0.5 : 0.1;
    const double depth = (k == 2 ? 0.13 : (k == 1 || k == 3) ? 0.12 : 0.08) * thin;
    p[55 + k] = mouth(u, mv + depth + part * (1 - 0.5 * cornerness) - 0.05 * a17, cornerness);
  }
  p[60] = mouth(-0.3, mv, 0.9);
  p[64] = mouth(0.3, mv, 0.9);
  const std::array<double, 3> iu = {-0.1, 0, 0.1};
  for (size_t k = 0; k < 3; ++k) {
    p[61 + k] = mouth(iu[k], mv - 0.01 - upper_lift * 0.8 - 0.25 * part, 0.1);
    p[65 + k] = mouth(iu[2 - k], mv + 0.01 + 0.75 * part - 0.04 * a17, 0.1);
  }

  // Pose: a small in-plane rotation and shift per frame, then to pixels.
  const double angle = rng.uniform(-0.06, 0.06), dx = rng.uniform(-1.5, 1.5), dy = rng.uniform(-1.5, 1.5);
  const double ca = std::cos(angle), sa = std::sin(angle), w = id.half_width;
  auto to_px = [&](cv::Point2d q) {
    return cv::Point2d{id.cx + dx + w * (ca * q.x - sa * q.y), id.cy + dy + w * (sa * q.x + ca * q.y)};
  };
  std::vector<cv::Point2f> landmarks;
  std::array<cv::Point2d, 68> px;
  for (size_t i = 0; i < 68; ++i) {
    px[i] = to_px(p[i]);
    landmarks.emplace_back(static_cast<float>(px[i].x), static_cast<float>(px[i].y));
  }

  // Drawing at kSuper x in fixed point: continuous coordinate X maps to OpenCV's kSuper * X - 0.5.
  const int n = image.rows;
  cv::Mat big(n * kSuper, n * kSuper, CV_8UC3, id.background);
  auto fx = [](double X) { return static_cast<int>(std::lround((kSuper * X - 0.5) * (1 << kShift))); };
  auto pt = [&](cv::Point2d q) { return cv::Point(fx(q.x), fx(q.y)); };
  auto model = [&](double u, double v) { return pt(to_px({u, v})); };
  auto poly = [&](std::initializer_list<size_t> idx) {
    std::vector<cv::Point> out;
    for (size_t i : idx) out.push_back(pt(px[i]));
    return out;
  };
  auto line_w = [&](double t) { return std::max(1, static_cast<int>(std::lround(t * w * kSuper))); };
  auto stroke = [&](const std::vector<cv::Point>& pts, const cv::Scalar& colour, double t, bool closed = false) {
    cv::polylines(big, std::vector<std::vector<cv::Point>>{pts}, closed, colour, line_w(t), cv::LINE_AA, kShift);
  };
  auto fill = [&](cv::Mat& dst, const std::vector<cv::Point>& pts, const cv::Scalar& colour) {
    cv::fillPoly(dst, std::vector<std::vector<cv::Point>>{pts}, colour, cv::LINE_AA, kShift);
  };
  const cv::Scalar crease = id.skin * 0.6;

  // Head: jaw below, an arc over the forehead.
  std::vector<cv::Point> head;
  for (size_t i = 0; i <= 16; ++i) head.push_back(pt(px[i]));
  for (int k = 1; k < 16; ++k) {
    const double t = kPi * k / 16.0;
    head.push_back(model(std::cos(t), -0.1 - 1.15 * std::sin(t)));
  }
  fill(big, head, id.skin);

  // Brows, with AU1/AU2 forehead wrinkles and AU4's vertical furrows between them.
  stroke(poly({17, 18, 19, 20, 21}), id.brow, 0.05);
  stroke(poly({22, 23, 24, 25, 26}), id.brow, 0.05);
  for (int r = 0; r < 2; ++r) {
    const double v = -0.78 - 0.12 * r;
    if (a1 > 0) stroke({model(-0.22 * a1, v), model(0, v - 0.02), model(0.22 * a1, v)}, crease, 0.02 + 0.02 * a1);
    if (a2 > 0)
      for (double s : {-1.0, 1.0})
        stroke({model(s * 0.35, v + 0.05), model(s * (0.35 + 0.3 * a2), v + 0.03)}, crease, 0.02 + 0.02 * a2);
  }
  if (a4 > 0)
    for (double s : {-1.0, 1.0}) stroke({model(s * 0.07, -0.52), model(s * 0.06, -0.52 + 0.16 * a4)}, crease, 0.02 + 0.02 * a4);

  // Eyes: white, an iris clipped to the lids, the lid outline (thicker when tightened).
  for (size_t b : {size_t{36}, size_t{42}}) {
    const auto outline = poly({b, b + 1, b + 2, b + 3, b + 4, b + 5});
    fill(big, outline, cv::Scalar(235, 235, 235));
    cv::Mat mask = cv::Mat::zeros(big.size(), CV_8U), iris = big.clone();
    fill(mask, outline, cv::Scalar(255));
    const cv::Point2d centre = (px[b] + px[b + 3]) * 0.5;
    cv::circle(iris, pt(centre), static_cast<int>(std::lround(0.075 * w * kSuper * (1 << kShift))), cv::Scalar(50, 40, 30),
               cv::FILLED, cv::LINE_AA, kShift);
    iris.copyTo(big, mask);
    stroke(outline, cv::Scalar(30, 30, 30), 0.018 + 0.025 * a7, true);
  }
  // AU6: cheek raise creases under the eyes and crow's feet at the outer corners.
  if (a6 > 0)
    for (double s : {-1.0, 1.0}) {
      const double c = 0.42 * id.eye_spread;
      stroke({model(s * (c - 0.18), -0.1), model(s * c, -0.06 - 0.04 * a6), model(s * (c + 0.18), -0.1)}, crease, 0.02 + 0.02 * a6);
      stroke({model(s * (c + 0.21), -0.3), model(s * (c + 0.21 + 0.12 * a6), -0.34)}, crease, 0.02);
      stroke({model(s * (c + 0.21), -0.25), model(s * (c + 0.21 + 0.12 * a6), -0.22)}, crease, 0.02);
    }

  // Nose, with AU9's wrinkles across the bridge.
  stroke(poly({27, 28, 29, 30}), crease, 0.025);
  stroke(poly({31, 32, 33, 34, 35}), crease, 0.03);
  if (a9 > 0)
    for (int r = 0; r < 3; ++r) {
      const double v = -0.25 + 0.07 * r;
      stroke({model(-0.06 - 0.08 * a9, v), model(0.06 + 0.08 * a9, v)}, crease, 0.015 + 0.015 * a9);
    }

  // Mouth: lips, then the opening (teeth when only the lips part, dark when the jaw drops).
  // AU23 tightens the lips into a narrower, darker band.
  fill(big, poly({48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59}), id.lip * (1.0 - 0.35 * a23));
  const cv::Scalar inside = a26 > 0.3 ? cv::Scalar(30, 20, 50) : cv::Scalar(215, 220, 225);
  fill(big, poly({60, 61, 62, 63, 64, 65, 66, 67}), inside);
  stroke(poly({60, 61, 62, 63, 64}), id.lip * 0.5, 0.02);
  stroke(poly({64, 65, 66, 67, 60}), id.lip * 0.5, 0.02);
  if (a14 > 0)  // dimples and creases beside the tightened corners
    for (size_t c : {size_t{48}, size_t{54}}) {
      const cv::Point2d side = (px[c] - px[62]) * (1.0 / std::max(1e-6, cv::norm(px[c] - px[62])));
      const cv::Point2d out = px[c] + side * (0.08 * w);
      cv::circle(big, pt(out), static_cast<int>(std::lround((0.025 + 0.035 * a14) * w * kSuper * (1 << kShift))), crease,
                 cv::FILLED, cv::LINE_AA, kShift);
      stroke({pt(out + cv::Point2d(0, -0.12 * w * a14)), pt(out + cv::Point2d(0, 0.12 * w * a14))}, crease, 0.02 + 0.015 * a14);
    }
  if (a23 > 0)  // tightened lips: a hard red margin
    stroke(poly({48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59}), id.lip * (1.0 - 0.5 * a23), 0.015 + 0.02 * a23, true);
  if (a17 > 0) stroke({pt(px[6] * 0.5 + px[57] * 0.5), pt((px[8] + px[57]) * 0.5), pt(px[10] * 0.5 + px[57] * 0.5)}, crease, 0.02 + 0.03 * a17);
  if (a24 > 0) stroke(poly({48, 51, 54}), id.lip * 0.4, 0.02 + 0.02 * a24);

  cv::resize(big, image, image.size(), 0, 0, cv::INTER_AREA);
  cv::Mat noise(image.size(), CV_16SC3);
  cv::RNG cv_rng(rng.next());
  cv_rng.fill(noise, cv::RNG::NORMAL, 0, 3);
  cv::Mat noisy;
  image.convertTo(noisy, CV_16SC3);
  noisy += noise;
  noisy.convertTo(image, CV_8UC3);
  return landmarks;
}

}  // namespace facet::data::face
