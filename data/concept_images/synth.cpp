// `facet data synth concept`: a small stand-in for a customisation concept folder (concept_images):
// one drawn subject — a red ring around a yellow disc with a dark stripe — at a random place, size
// and turn on a different background each time (a colour gradient, and in half the images a few
// grey blocks), PNG images with their foreground masks in masks/. The subject is what stays the
// same; the background and pose are what DETEX's attribute words are meant to absorb.
#include "core/config.h"
#include "data/face/synth_face.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>

namespace facet::data {
namespace {

namespace fs = std::filesystem;

struct ConceptSynthOptions {
  int64_t images = 8, size = 64;
  uint64_t seed = 0;

  static ConceptSynthOptions from(const Config& c) {
    ConceptSynthOptions o;
    o.images = c.get_in_range<int64_t>("images", o.images, Range::closed(1, 10000));
    o.size = c.get_in_range<int64_t>("size", o.size, Range::closed(32, 1024));
    o.seed = c.get<uint64_t>("seed", o.seed);
    return o;
  }
};

SynthResult write_concept(const ConceptSynthOptions& o, const fs::path& root) {
  fs::create_directories(root / "masks");
  const int s = static_cast<int>(o.size);
  for (int64_t i = 0; i < o.images; ++i) {
    face::SynthRng rng(mix_seed(o.seed, 0xC0C3, static_cast<uint64_t>(i)));
    cv::Mat image(s, s, CV_8UC3), mask(s, s, CV_8UC1, cv::Scalar(0));
    const cv::Vec3d top(rng.uniform(40, 220), rng.uniform(40, 220), rng.uniform(40, 220));
    const cv::Vec3d bottom(rng.uniform(40, 220), rng.uniform(40, 220), rng.uniform(40, 220));
    for (int y = 0; y < s; ++y) {
      const double t = static_cast<double>(y) / (s - 1);
      image.row(y).setTo(cv::Scalar(top * (1 - t) + bottom * t));
    }
    if (rng.chance(0.5))
      for (int k = 0; k < 3; ++k) {
        const int x = static_cast<int>(rng.integer(0, s - 8)), y = static_cast<int>(rng.integer(0, s - 8));
        const double g = rng.uniform(60, 200);
        cv::rectangle(image, cv::Rect(x, y, s / 6, s / 6), cv::Scalar(g, g, g), cv::FILLED);
      }
    // The subject (BGR colours as OpenCV draws them).
    const double r = rng.uniform(0.18, 0.3) * s;
    const cv::Point centre(static_cast<int>(rng.uniform(r, s - r)), static_cast<int>(rng.uniform(r, s - r)));
    const double angle = rng.uniform(0, M_PI);
    cv::circle(image, centre, static_cast<int>(r), cv::Scalar(30, 30, 220), cv::FILLED, cv::LINE_AA);
    cv::circle(image, centre, static_cast<int>(r * 0.65), cv::Scalar(40, 210, 240), cv::FILLED, cv::LINE_AA);
    const cv::Point d(static_cast<int>(std::cos(angle) * r * 0.6), static_cast<int>(std::sin(angle) * r * 0.6));
    cv::line(image, centre - d, centre + d, cv::Scalar(40, 40, 40), std::max(2, s / 24), cv::LINE_AA);
    cv::circle(mask, centre, static_cast<int>(r), cv::Scalar(255), cv::FILLED);
    const std::string name = fmt::format("{:04d}.png", i);
    if (!cv::imwrite((root / name).string(), image)) fail("{}: cannot write the image", (root / name).string());
    if (!cv::imwrite((root / "masks" / name).string(), mask)) fail("{}: cannot write the mask", (root / "masks" / name).string());
  }
  SynthResult r;
  r.root = root;
  r.files = 2 * o.images;
  r.summary = fmt::format("concept: {} images ({}x{} px) of one drawn subject on varied backgrounds, foreground masks in masks/",
                          o.images, o.size, o.size);
  return r;
}

FACET_REGISTER(synth_registry(), "concept",
               "One drawn subject on varied backgrounds with foreground masks, for concept_images (options: images, size, seed)",
               synth_writer<ConceptSynthOptions>(write_concept));

}  // namespace
}  // namespace facet::data
