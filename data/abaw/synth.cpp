// `facet data synth abaw`: a small ABAW4 MTL set in the published layout (abaw.h): the two
// annotation files and cropped_aligned/<video>/<frame %05d>.jpg crops of drawn faces
// (data/face/synth_face.h), one identity per video, training and validation videos disjoint. Each
// frame shows one of the 8 ABAW expressions through its prototype AUs (Other: the pain prototype),
// so the 12 AU labels are the AUs actually drawn and the expression is visible through them;
// valence-arousal sit at the expression's place on Russell's circumplex, scaled by how strongly it
// is shown, plus noise. Expressions come in runs of a few frames, as in the videos, and each task
// is missing on its own share of frames (never all three on one frame), written as -5 / -1 / -1.
#include "core/config.h"
#include "data/abaw/abaw.h"
#include "data/face/synth_face.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace facet::data::abaw {
namespace {

namespace fs = std::filesystem;
using face::Expression;

// ABAW order -> the drawn prototype.
constexpr std::array<Expression, 8> kPrototype = {Expression::kNeutral, Expression::kAnger, Expression::kDisgust,
                                                  Expression::kFear,    Expression::kHappy, Expression::kSad,
                                                  Expression::kSurprise, Expression::kPain};
// (valence, arousal) at full strength, Russell's circumplex; Other between the negative ones.
constexpr std::array<std::array<double, 2>, 8> kCircumplex = {{{0.0, 0.0},
                                                               {-0.55, 0.6},
                                                               {-0.6, 0.3},
                                                               {-0.5, 0.7},
                                                               {0.7, 0.4},
                                                               {-0.6, -0.4},
                                                               {0.25, 0.75},
                                                               {-0.3, 0.35}}};
// Class shares, imbalanced like the real data (Neutral, Happiness and Other common).
constexpr std::array<double, 8> kShare = {0.22, 0.08, 0.06, 0.07, 0.2, 0.12, 0.1, 0.15};

struct SynthOptions {
  int64_t train_videos = 8, val_videos = 4, frames_per_video = 30, size = 112;
  uint64_t seed = 0;
  double va_missing = 0.1, expression_missing = 0.1, au_missing = 0.1;

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.train_videos = c.get<int64_t>("train_videos", o.train_videos);
    o.val_videos = c.get<int64_t>("val_videos", o.val_videos);
    o.frames_per_video = c.get<int64_t>("frames_per_video", o.frames_per_video);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.va_missing = c.get<double>("va_missing", o.va_missing);
    o.expression_missing = c.get<double>("expression_missing", o.expression_missing);
    o.au_missing = c.get<double>("au_missing", o.au_missing);
    for (const char* key : {"train_videos", "val_videos", "frames_per_video"})
      if (c.get<int64_t>(key, 1) < 1) fail("{}: {}: expected >= 1", c.where(key), c.full_key(key));
    if (o.size < 48 || o.size > 1024) fail("{}: {}: expected 48..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    for (const char* key : {"va_missing", "expression_missing", "au_missing"}) {
      const double p = c.get<double>(key, 0.0);
      if (!(p >= 0 && p < 1)) fail("{}: {}: expected a share in [0, 1), got {}", c.where(key), c.full_key(key), p);
    }
    return o;
  }
};

int sample_class(face::SynthRng& rng) {
  double u = rng.uniform(), acc = 0;
  for (size_t k = 0; k < kShare.size(); ++k)
    if ((acc += kShare[k]) > u) return static_cast<int>(k);
  return static_cast<int>(kShare.size()) - 1;
}

// One annotation file and its videos; returns the number of frames written.
int64_t write_split(const SynthOptions& o, const fs::path& root, std::string_view file, int64_t videos, uint64_t split) {
  std::ofstream out(root / file);
  out << kHeader << "\n";
  const std::vector<int> coded(kAus.begin(), kAus.end());
  int64_t frames = 0;
  for (int64_t v = 0; v < videos; ++v) {
    face::SynthRng rng(mix_seed(o.seed, 0xABA4 + split, static_cast<uint64_t>(v)));
    const face::FaceIdentity id = face::random_identity(rng, static_cast<int>(o.size));
    // Aff-Wild2-like video names: <id>-<fps>-<width>x<height>.
    const std::string video = fmt::format("{}-30-{}", split * 100 + static_cast<uint64_t>(v) + 1,
                                          rng.chance(0.5) ? "1280x720" : "640x360");
    fs::create_directories(root / kImagesDir / video);
    int expression = 0;
    int64_t run_left = 0;
    for (int64_t f = 1; f <= o.frames_per_video; ++f) {
      if (run_left-- <= 0) {
        expression = sample_class(rng);
        run_left = rng.integer(2, 6);
      }
      const auto intensities = face::sample_intensities(rng, kPrototype[static_cast<size_t>(expression)], coded, 1.0, false);
      cv::Mat image(static_cast<int>(o.size), static_cast<int>(o.size), CV_8UC3);
      face::draw_face(image, id, intensities, rng);
      const std::string relative = fmt::format("{}/{:05d}.jpg", video, f);
      const fs::path path = root / kImagesDir / relative;
      if (!cv::imwrite(path.string(), image, {cv::IMWRITE_JPEG_QUALITY, 95})) fail("{}: cannot write the JPEG", path.string());

      // How strongly the expression shows: the strongest of its drawn AUs.
      int strongest = 0;
      for (const auto& [au, level] : intensities) strongest = std::max(strongest, level);
      const double strength = 0.4 + 0.6 * strongest / 5.0;
      bool va_missing = rng.chance(o.va_missing), expression_missing = rng.chance(o.expression_missing);
      const bool au_missing = rng.chance(o.au_missing);
      if (va_missing && expression_missing && au_missing) expression_missing = false;
      out << relative;
      for (size_t k = 0; k < 2; ++k) {
        const double value =
            std::clamp(kCircumplex[static_cast<size_t>(expression)][k] * strength + rng.uniform(-0.1, 0.1), -1.0, 1.0);
        out << "," << (va_missing ? fmt::format("{}", kMissingVa) : fmt::format("{:.4f}", value));
      }
      out << "," << (expression_missing ? kMissingExpression : expression);
      for (int au : kAus) out << "," << (au_missing ? kMissingAu : (intensities.count(au) && intensities.at(au) >= 1 ? 1 : 0));
      out << "\n";
      ++frames;
    }
  }
  out.close();
  if (!out) fail("{}: cannot write", (root / file).string());
  return frames;
}

SynthResult write_abaw(const SynthOptions& o, const fs::path& root) {
  fs::create_directories(root / kImagesDir);
  const int64_t train = write_split(o, root, kTrainFile, o.train_videos, 0);
  const int64_t val = write_split(o, root, kValFile, o.val_videos, 1);
  SynthResult r;
  r.root = root;
  r.files = train + val + 2;
  r.summary = fmt::format("abaw: {} training and {} validation videos, {} + {} frames ({}x{} px), VA / expression / AU "
                          "missing on {:.0f}% / {:.0f}% / {:.0f}% of frames",
                          o.train_videos, o.val_videos, train, val, o.size, o.size, 100 * o.va_missing,
                          100 * o.expression_missing, 100 * o.au_missing);
  return r;
}

FACET_REGISTER(synth_registry(), "abaw",
               "Drawn faces in the ABAW4 MTL layout: annotation files + cropped_aligned JPEGs (options: train_videos, "
               "val_videos, frames_per_video, size, seed, va_missing, expression_missing, au_missing)",
               synth_writer<SynthOptions>(write_abaw));

}  // namespace
}  // namespace facet::data::abaw
