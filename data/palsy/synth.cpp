// `facet data synth palsy`: a small graded palsy set in the layout of palsy.h. Each subject is a drawn
// face (data/face/synth_face.h) with one grade and one affected side; each of its images is one
// motion of a House-Brackmann examination (rest, brow raise, eye squeeze, smile), drawn, then the
// affected half sagged by droop_face with severity grade / (grades - 1), so grade 0 is a symmetric
// face and the highest grade the strongest one-sided droop. Grades go round-robin over subjects and
// the k-th subject of a grade takes split `splits[k % len]`, so the splits are subject-exclusive and
// (with at least len subjects per grade) every split holds every grade.
#include "core/config.h"
#include "data/face/synth_face.h"
#include "data/palsy/palsy.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

namespace facet::data {

namespace palsy {

void droop_face(cv::Mat& image, std::vector<cv::Point2f>& landmarks, int side, double severity, double half_width) {
  if (landmarks.size() != 68) fail("droop_face: expected the 68 iBUG landmarks, got {}", landmarks.size());
  if (side != -1 && side != 1) fail("droop_face: side must be -1 (image left) or +1 (image right), got {}", side);
  if (severity <= 0) return;
  // iBUG 68 (0-based): the image's left half is the subject's right: mouth corner 48, brow 17..21,
  // lower lid 40-41; the image's right: 54, 22..26, 46-47.
  const bool left = side < 0;
  auto at = [&](int i) { return cv::Point2d(landmarks[static_cast<size_t>(i)].x, landmarks[static_cast<size_t>(i)].y); };
  struct Bump {
    cv::Point2d centre;
    double amplitude, sigma;
  };
  // Amplitudes over widths stay below 1 / 0.61 (the Gaussian's steepest slope), so the sag is an
  // invertible warp: a lid, brow or lip corner never folds over itself.
  const std::array<Bump, 3> bumps = {{
      {at(left ? 48 : 54), 0.28 * half_width * severity, 0.22 * half_width},             // mouth corner
      {at(left ? 19 : 24), 0.16 * half_width * severity, 0.25 * half_width},             // brow
      {(at(left ? 40 : 46) + at(left ? 41 : 47)) * 0.5, 0.08 * half_width * severity, 0.1 * half_width},  // lower lid
  }};
  auto sag = [&](double x, double y) {
    double dy = 0;
    for (const Bump& b : bumps) {
      const double dx = x - b.centre.x, dv = y - b.centre.y;
      dy += b.amplitude * std::exp(-(dx * dx + dv * dv) / (2 * b.sigma * b.sigma));
    }
    return dy;
  };
  // Output pixel q shows the source point p with p + sag(p) = q (continuous coordinates, pixel
  // centres at +0.5); the fixed-point iteration converges because the sag's slope is below 1.
  cv::Mat map_x(image.size(), CV_32F), map_y(image.size(), CV_32F);
  for (int r = 0; r < image.rows; ++r)
    for (int c = 0; c < image.cols; ++c) {
      const double qx = c + 0.5, qy = r + 0.5;
      double py = qy;
      for (int it = 0; it < 6; ++it) py = qy - sag(qx, py);
      map_x.at<float>(r, c) = static_cast<float>(qx - 0.5);
      map_y.at<float>(r, c) = static_cast<float>(py - 0.5);
    }
  cv::Mat out;
  cv::remap(image, out, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  image = out;
  for (auto& p : landmarks) p.y += static_cast<float>(sag(p.x, p.y));
}

}  // namespace palsy

namespace {

namespace fs = std::filesystem;

// Rest, brow raise, eye squeeze, smile.
constexpr std::array<face::Expression, 4> kMotions = {face::Expression::kNeutral, face::Expression::kSurprise,
                                                      face::Expression::kPain, face::Expression::kHappy};

struct PalsySynthOptions {
  int64_t subjects = 30, images_per_subject = 4, size = 128, grades = palsy::kHouseBrackmannGrades;
  std::vector<std::string> splits = {"train", "train", "train", "val", "test"};
  uint64_t seed = 0;
  bool landmarks = true;

  static PalsySynthOptions from(const Config& c) {
    PalsySynthOptions o;
    o.subjects = c.get<int64_t>("subjects", o.subjects);
    o.images_per_subject = c.get<int64_t>("images_per_subject", o.images_per_subject);
    o.size = c.get<int64_t>("size", o.size);
    o.grades = c.get<int64_t>("grades", o.grades);
    o.splits = c.get<std::vector<std::string>>("splits", o.splits);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.landmarks = c.get<bool>("landmarks", o.landmarks);
    if (o.grades < 2) fail("{}: {}: expected at least 2, got {}", c.where("grades"), c.full_key("grades"), o.grades);
    if (o.subjects < o.grades)
      fail("{}: {}: expected at least one subject per grade ({}), got {}", c.where("subjects"), c.full_key("subjects"), o.grades,
           o.subjects);
    if (o.images_per_subject < 1)
      fail("{}: {}: expected >= 1, got {}", c.where("images_per_subject"), c.full_key("images_per_subject"), o.images_per_subject);
    if (o.size < 48 || o.size > 1024) fail("{}: {}: expected 48..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    if (o.splits.empty()) fail("{}: {}: expected a non-empty list of train, val and test", c.where("splits"), c.full_key("splits"));
    for (const auto& s : o.splits)
      if (s != "train" && s != "val" && s != "test")
        fail("{}: {}: expected train, val or test, got \"{}\"", c.where("splits"), c.full_key("splits"), s);
    return o;
  }
};

std::string split_of(const PalsySynthOptions& o, int64_t subject) {
  const int64_t rank = subject / o.grades;  // among the subjects of its grade
  return o.splits[static_cast<size_t>(rank) % o.splits.size()];
}

SynthResult write_palsy(const PalsySynthOptions& o, const fs::path& root) {
  fs::create_directories(root / palsy::kImagesDir);
  std::ofstream labels(root / palsy::kLabels), marks;
  labels << "image,grade,split,subject\n";
  if (o.landmarks) marks.open(root / palsy::kLandmarks);
  int64_t files = 0;
  std::map<std::string, int64_t> per_split;
  for (int64_t s = 0; s < o.subjects; ++s) {
    face::SynthRng rng(mix_seed(o.seed, 0xFACE, static_cast<uint64_t>(s)));
    const face::FaceIdentity id = face::random_identity(rng, static_cast<int>(o.size));
    const int64_t grade = s % o.grades;
    const int side = rng.chance(0.5) ? -1 : 1;
    const double severity = static_cast<double>(grade) / static_cast<double>(o.grades - 1);
    const std::string subject = fmt::format("P{:03d}", s + 1), split = split_of(o, s);
    for (int64_t k = 0; k < o.images_per_subject; ++k) {
      const auto motion = kMotions[static_cast<size_t>(k) % kMotions.size()];
      const auto intensities = face::sample_intensities(rng, motion, face::kDrawableAus, 1.0, false);
      cv::Mat image(static_cast<int>(o.size), static_cast<int>(o.size), CV_8UC3);
      auto points = face::draw_face(image, id, intensities, rng);
      palsy::droop_face(image, points, side, severity, id.half_width);
      const std::string name = fmt::format("{}_{}.jpg", subject, k);
      const fs::path file = root / palsy::kImagesDir / name;
      if (!cv::imwrite(file.string(), image, {cv::IMWRITE_JPEG_QUALITY, 95})) fail("{}: cannot write the JPEG", file.string());
      labels << name << "," << grade << "," << split << "," << subject << "\n";
      if (o.landmarks) {
        marks << name;
        for (const auto& q : points) marks << fmt::format(" {:.2f} {:.2f}", q.x, q.y);
        marks << "\n";
      }
      ++files;
      ++per_split[split];
    }
  }
  labels.close();
  if (!labels) fail("{}: cannot write", (root / palsy::kLabels).string());
  if (o.landmarks) {
    marks.close();
    if (!marks) fail("{}: cannot write", (root / palsy::kLandmarks).string());
  }
  SynthResult r;
  r.root = root;
  r.files = files + 1 + (o.landmarks ? 1 : 0);
  r.summary = fmt::format("palsy: {} subjects x {} images ({}x{} px), {} grades; train {}, val {}, test {} images", o.subjects,
                          o.images_per_subject, o.size, o.size, o.grades, per_split["train"], per_split["val"],
                          per_split["test"]);
  return r;
}

FACET_REGISTER(synth_registry(), "palsy",
               "Drawn faces with a one-sided droop growing with the grade: labels.csv, images/, landmarks.txt "
               "(options: subjects, images_per_subject, size, grades, splits, seed, landmarks)",
               synth_writer<PalsySynthOptions>(write_palsy));

}  // namespace
}  // namespace facet::data
