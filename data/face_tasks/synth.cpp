// `facet data synth face_tasks`: a small multi-task face set in the layout of face_tasks.h, every
// label visible in its drawn face (data/face/synth_face.h), so that each task can be learned:
//   expression  one of RAF-DB's seven (0 Surprise .. 6 Neutral), shown through its prototype AUs
//               (at least one of them drawn), imbalanced like RAF-DB's (Happiness most frequent,
//               then Neutral), so the majority class is 30%;
//   au_<n>      BP4D's 12 AUs drawn as in the synthetic BP4D (AU5, 9, 25, 26 are drawn too, unlabelled,
//               as parts of the expressions), a few 9 (unknown);
//   attr_<name> Eyeglasses (drawn rims, bridge and arms), Pale_Skin (skin luminance), Wide_Face (face
//               half-width), Smiling (AU12), Mouth_Slightly_Open (AU25 or AU26), Young (age < 35);
//               CelebA's -1/1 values (or 0/1 with attribute_values: 01);
//   age         18..80 years, uniform: brows grey and nasolabial folds darken with age;
//   yaw, pitch, roll  the drawn face rotated in 3-D as a plane (a homography: perspective
//               foreshortening for yaw and pitch, in-plane rotation for roll), image and landmarks
//               together. Sign convention: yaw > 0 brings the image-right half of the face closer,
//               pitch > 0 the upper half (looking down), roll > 0 turns the face clockwise; a
//               horizontal flip negates yaw and roll;
//   landmarks   the 68 iBUG points after the rotation.
// Each task's labels are left unknown for a share `missing` of the images (a multi-task set merged
// from single-task benchmarks has most of them unknown; here few, so every task has data).
#include "core/config.h"
#include "data/face/au.h"
#include "data/face/synth_face.h"
#include "data/face_tasks/face_tasks.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>

namespace facet::data::face_tasks {
namespace {

namespace fs = std::filesystem;
using face::Expression;

// RAF-DB class -> the drawn prototype, and how often it occurs.
constexpr std::array<Expression, 7> kPrototypes = {Expression::kSurprise, Expression::kFear,  Expression::kDisgust,
                                                   Expression::kHappy,    Expression::kSad,   Expression::kAnger,
                                                   Expression::kNeutral};
constexpr std::array<double, 7> kExpressionShare = {0.12, 0.08, 0.08, 0.30, 0.14, 0.08, 0.20};
// The drawn AUs of each prototype (synth_face.cpp's FACS prototypes without the undrawn AU20); a
// non-neutral face shows at least one of them.
const std::array<std::vector<int>, 7>& prototype_aus() {
  static const std::array<std::vector<int>, 7> p = {{{1, 2, 5, 25, 26}, {1, 2, 4, 5, 25}, {4, 9, 10, 15, 17},
                                                     {6, 7, 10, 12, 14, 25}, {1, 4, 15, 17}, {4, 7, 17, 23, 24}, {}}};
  return p;
}
const std::vector<std::string> kAttributes = {"Eyeglasses", "Mouth_Slightly_Open", "Pale_Skin", "Smiling", "Wide_Face", "Young"};

struct SynthOptions {
  int64_t train = 800, val = 200, test = 0, size = 128;
  uint64_t seed = 0;
  double missing = 0.1, unknown_rate = 0.03;
  double max_yaw = 40, max_pitch = 25, max_roll = 30;
  bool landmarks = true, plus_minus_one = true;

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.train = c.get<int64_t>("train", o.train);
    o.val = c.get<int64_t>("val", o.val);
    o.test = c.get<int64_t>("test", o.test);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.missing = c.get<double>("missing", o.missing);
    o.unknown_rate = c.get<double>("unknown_rate", o.unknown_rate);
    o.max_yaw = c.get<double>("max_yaw", o.max_yaw);
    o.max_pitch = c.get<double>("max_pitch", o.max_pitch);
    o.max_roll = c.get<double>("max_roll", o.max_roll);
    o.landmarks = c.get<bool>("landmarks", o.landmarks);
    const std::string values = c.get<std::string>("attribute_values", "pm1");
    if (values != "pm1" && values != "01")
      fail("{}: {}: expected pm1 (CelebA's -1/1) or 01, got \"{}\"", c.where("attribute_values"), c.full_key("attribute_values"), values);
    o.plus_minus_one = values == "pm1";
    auto at_least_zero = [&](const char* key, int64_t n) {
      if (n < 0) fail("{}: {}: expected >= 0, got {}", c.where(key), c.full_key(key), n);
    };
    at_least_zero("train", o.train);
    at_least_zero("val", o.val);
    at_least_zero("test", o.test);
    if (o.train + o.val + o.test == 0) fail("{}: {}: every split is empty", c.where(), c.prefix());
    if (o.size < 32 || o.size > 1024) fail("{}: {}: expected 32..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    auto in_range = [&](const char* key, double v, double hi, const char* what) {
      if (!(v >= 0 && v <= hi)) fail("{}: {}: expected 0..{}{}, got {}", c.where(key), c.full_key(key), hi, what, v);
    };
    in_range("missing", o.missing, 1, "");
    in_range("unknown_rate", o.unknown_rate, 1, "");
    in_range("max_yaw", o.max_yaw, 80, " degrees");
    in_range("max_pitch", o.max_pitch, 80, " degrees");
    in_range("max_roll", o.max_roll, 80, " degrees");
    return o;
  }
};

int pick_expression(face::SynthRng& rng) {
  double u = rng.uniform(), acc = 0;
  for (size_t k = 0; k < kExpressionShare.size(); ++k)
    if (u < (acc += kExpressionShare[k])) return static_cast<int>(k);
  return static_cast<int>(kExpressionShare.size()) - 1;
}

// Intensities of a face showing `expression`: resampled until a non-neutral face draws one of its AUs.
std::map<int, int> expression_intensities(face::SynthRng& rng, int expression, const std::vector<int>& drawn) {
  const auto& wanted = prototype_aus()[static_cast<size_t>(expression)];
  std::map<int, int> out;
  for (int attempt = 0; attempt < 50; ++attempt) {
    out = face::sample_intensities(rng, kPrototypes[static_cast<size_t>(expression)], drawn, 1.0, false);
    if (wanted.empty()) return out;
    for (int au : wanted)
      if (out.count(au) && out.at(au) >= 2) return out;
  }
  return out;
}

cv::Point shifted(cv::Point2d p) {  // OpenCV fixed point (4 bits), continuous -> pixel-index coordinates
  return {static_cast<int>(std::lround((p.x - 0.5) * 16)), static_cast<int>(std::lround((p.y - 0.5) * 16))};
}

void draw_glasses(cv::Mat& image, const std::vector<cv::Point2f>& lm, double w) {
  auto mean = [&](size_t from) {
    cv::Point2d m(0, 0);
    for (size_t i = from; i < from + 6; ++i) m += cv::Point2d(lm[i].x, lm[i].y);
    return m * (1.0 / 6);
  };
  const cv::Point2d right = mean(36), left = mean(42);
  const double r = 0.21 * w;
  const int thick = std::max(1, static_cast<int>(std::lround(0.035 * w)));
  const cv::Scalar frame(25, 20, 20);
  for (const auto& c : {right, left})
    cv::circle(image, shifted(c), static_cast<int>(std::lround(r * 16)), frame, thick, cv::LINE_AA, 4);
  const cv::Point2d axis = (left - right) * (1.0 / std::max(1e-6, cv::norm(left - right)));
  cv::line(image, shifted(right + axis * r), shifted(left - axis * r), frame, thick, cv::LINE_AA, 4);
  cv::line(image, shifted(right - axis * r), shifted(cv::Point2d(lm[0].x, lm[0].y)), frame, thick, cv::LINE_AA, 4);
  cv::line(image, shifted(left + axis * r), shifted(cv::Point2d(lm[16].x, lm[16].y)), frame, thick, cv::LINE_AA, 4);
}

// Nasolabial folds from beside the nose wings to beside the mouth corners, darker with `strength`.
void draw_folds(cv::Mat& image, const std::vector<cv::Point2f>& lm, const cv::Scalar& skin, double w, double strength) {
  if (strength < 0.05) return;
  const int thick = std::max(1, static_cast<int>(std::lround((0.02 + 0.025 * strength) * w)));
  const cv::Scalar colour = skin * (1.0 - 0.5 * strength);
  for (const auto& [wing, corner, side] : {std::tuple{31, 48, -1.0}, std::tuple{35, 54, 1.0}}) {
    const cv::Point2d a(lm[static_cast<size_t>(wing)].x + side * 0.1 * w, lm[static_cast<size_t>(wing)].y);
    const cv::Point2d b(lm[static_cast<size_t>(corner)].x + side * 0.08 * w, lm[static_cast<size_t>(corner)].y + 0.06 * w);
    const cv::Point2d mid = (a + b) * 0.5 + cv::Point2d(side * 0.07 * w, 0);
    const std::vector<cv::Point> curve = {shifted(a), shifted(mid), shifted(b)};
    cv::polylines(image, std::vector<std::vector<cv::Point>>{curve}, false, colour, thick, cv::LINE_AA, 4);
  }
}

// The face as a plane through its centre, rotated by (yaw, pitch, roll) degrees and seen by a
// pinhole camera `distance` half-widths away: a homography in continuous pixel coordinates that is
// the identity at zero angles.
cv::Matx33d pose_homography(double yaw, double pitch, double roll, double cx, double cy, double w, double distance) {
  const double d2r = std::numbers::pi / 180.0;
  const double y = yaw * d2r, p = pitch * d2r, r = roll * d2r;
  const cv::Matx33d ry(std::cos(y), 0, std::sin(y), 0, 1, 0, -std::sin(y), 0, std::cos(y));
  const cv::Matx33d rx(1, 0, 0, 0, std::cos(p), -std::sin(p), 0, std::sin(p), std::cos(p));
  const cv::Matx33d rz(std::cos(r), -std::sin(r), 0, std::sin(r), std::cos(r), 0, 0, 0, 1);
  const cv::Matx33d rot = rz * rx * ry;
  const cv::Matx33d to_plane(1 / w, 0, -cx / w, 0, 1 / w, -cy / w, 0, 0, 1);
  const cv::Matx33d rotate(rot(0, 0), rot(0, 1), 0, rot(1, 0), rot(1, 1), 0, rot(2, 0), rot(2, 1), distance);
  const cv::Matx33d project(w * distance, 0, cx, 0, w * distance, cy, 0, 0, 1);
  return project * rotate * to_plane;
}

SynthResult write_face_tasks(const SynthOptions& o, const fs::path& root) {
  const std::vector<int> labelled(face::kBp4dAus.begin(), face::kBp4dAus.end());
  std::vector<int> drawn = labelled;
  drawn.insert(drawn.end(), {5, 9, 25, 26});
  const int n = static_cast<int>(o.size);
  int64_t files = 0;
  std::array<int64_t, 7> expression_counts{};
  const std::vector<std::pair<std::string, int64_t>> splits = {{"train", o.train}, {"val", o.val}, {"test", o.test}};
  for (size_t split_index = 0; split_index < splits.size(); ++split_index) {
    const auto& [split, count] = splits[split_index];
    if (count == 0) continue;
    fs::create_directories(root / kImagesDir / split);
    const fs::path csv_path = root / (split + ".csv");
    std::ofstream csv(csv_path);
    csv << kImageColumn << "," << kExpressionColumn;
    for (int au : labelled) csv << "," << kAuPrefix << au;
    for (const auto& a : kAttributes) csv << "," << kAttributePrefix << a;
    csv << "," << kAgeColumn << ",yaw,pitch,roll";
    if (o.landmarks) csv << "," << kLandmarksColumn;
    csv << "\n";
    for (int64_t i = 0; i < count; ++i) {
      face::SynthRng rng(mix_seed(o.seed, 0xFACE + split_index, static_cast<uint64_t>(i)));
      face::FaceIdentity id = face::random_identity(rng, n);
      const double age = rng.uniform(18, 80), old = (age - 18) / 62;
      id.brow = id.brow * (1 - 0.85 * old) + cv::Scalar(175, 175, 178) * (0.85 * old);
      const int expression = pick_expression(rng);
      const auto intensities = expression_intensities(rng, expression, drawn);
      auto active = [&](int au) { return intensities.count(au) && intensities.at(au) >= 1; };

      cv::Mat image(n, n, CV_8UC3);
      std::vector<cv::Point2f> lm = face::draw_face(image, id, intensities, rng);
      const bool glasses = rng.chance(0.3);
      draw_folds(image, lm, id.skin, id.half_width, old);
      if (glasses) draw_glasses(image, lm, id.half_width);

      const double yaw = rng.uniform(-o.max_yaw, o.max_yaw), pitch = rng.uniform(-o.max_pitch, o.max_pitch),
                   roll = rng.uniform(-o.max_roll, o.max_roll);
      const cv::Matx33d h = pose_homography(yaw, pitch, roll, id.cx, id.cy, id.half_width, 4.0);
      // OpenCV warps in pixel-index coordinates (centres at integers): conjugate by the half-pixel shift.
      const cv::Matx33d h_index = cv::Matx33d(1, 0, -0.5, 0, 1, -0.5, 0, 0, 1) * h * cv::Matx33d(1, 0, 0.5, 0, 1, 0.5, 0, 0, 1);
      cv::Mat posed;
      cv::warpPerspective(image, posed, h_index, image.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, id.background);
      std::vector<cv::Point2f> posed_lm;
      cv::perspectiveTransform(lm, posed_lm, cv::Mat(h));

      const std::string name = fmt::format("{}/{:05d}.jpg", split, i);
      const fs::path file = root / kImagesDir / name;
      if (!cv::imwrite(file.string(), posed, {cv::IMWRITE_JPEG_QUALITY, 95})) fail("{}: cannot write the JPEG", file.string());
      ++files;

      const double luminance = 0.114 * id.skin[0] + 0.587 * id.skin[1] + 0.299 * id.skin[2];
      const std::vector<bool> attributes = {glasses, active(25) || active(26), luminance > 150, active(12),
                                            id.half_width > 0.315 * n, age < 35};
      csv << name << ",";
      if (rng.chance(o.missing)) {
        csv << -1;
      } else {
        csv << expression;
        ++expression_counts[static_cast<size_t>(expression)];
      }
      const bool aus_missing = rng.chance(o.missing);
      for (int au : labelled) csv << "," << (aus_missing || rng.chance(o.unknown_rate) ? face::kBp4dUnknown : active(au) ? 1 : 0);
      const bool attributes_missing = rng.chance(o.missing);
      for (bool a : attributes) {
        csv << ",";
        if (!attributes_missing) csv << (a ? 1 : o.plus_minus_one ? -1 : 0);
      }
      csv << ",";
      if (!rng.chance(o.missing)) csv << fmt::format("{:.1f}", age);
      if (rng.chance(o.missing)) csv << ",,,";
      else csv << fmt::format(",{:.2f},{:.2f},{:.2f}", yaw, pitch, roll);
      if (o.landmarks) {
        std::vector<std::string> xy;
        for (const auto& q : posed_lm) xy.insert(xy.end(), {fmt::format("{:.2f}", q.x), fmt::format("{:.2f}", q.y)});
        csv << ",\"" << fmt::format("{}", fmt::join(xy, ", ")) << "\"";
      }
      csv << "\n";
    }
    csv.close();
    if (!csv) fail("{}: cannot write", csv_path.string());
    ++files;
  }
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("face_tasks: {} train / {} val / {} test images ({}x{} px); expression counts {} ({}); {} AUs; "
                          "attributes {}; age 18-80; yaw/pitch/roll within {}/{}/{} degrees",
                          o.train, o.val, o.test, n, n, fmt::join(expression_counts, "/"),
                          fmt::join(std::begin(kRafExpressions), std::end(kRafExpressions), "/"), labelled.size(),
                          fmt::join(kAttributes, ", "), o.max_yaw, o.max_pitch, o.max_roll);
  return r;
}

FACET_REGISTER(synth_registry(), "face_tasks",
               "Drawn faces with expression, 12 AUs, 6 visible attributes, age and head pose in one CSV per split "
               "(options: train, val, test, size, seed, missing, unknown_rate, max_yaw, max_pitch, max_roll, landmarks, "
               "attribute_values: pm1|01)",
               synth_writer<SynthOptions>(write_face_tasks));

}  // namespace
}  // namespace facet::data::face_tasks
