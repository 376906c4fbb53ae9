// `facet data synth lsd`: a small stand-in for the ABAW4 LSD (learning from synthetic data)
// expression set in the ImageFolder layout (image_folder.h): train/<class>/ and val/<class>/ JPEGs
// of drawn faces (data/face/synth_face.h), one of the 6 basic expressions each, shown through its
// prototype AUs. Every image is a new identity; validation identities come from another seed
// stream. Classes are imbalanced (`shares`), so the majority-class baseline is not chance.
#include "core/config.h"
#include "data/face/synth_face.h"
#include "data/image_folder/image_folder.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>
#include <numeric>

namespace facet::data {
namespace {

namespace fs = std::filesystem;
using face::Expression;

// kLsdClasses order -> the drawn prototype.
constexpr std::array<Expression, 6> kPrototype = {Expression::kAnger, Expression::kDisgust, Expression::kFear,
                                                  Expression::kHappy, Expression::kSad,     Expression::kSurprise};

struct SynthOptions {
  int64_t train_images = 600, val_images = 180, size = 112;
  uint64_t seed = 0;
  std::vector<double> shares = {0.12, 0.08, 0.1, 0.3, 0.2, 0.2};

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.train_images = c.get<int64_t>("train_images", o.train_images);
    o.val_images = c.get<int64_t>("val_images", o.val_images);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.shares = c.get<std::vector<double>>("shares", o.shares);
    if (o.train_images < 1 || o.val_images < 1)
      fail("{}: {}: train_images and val_images must be >= 1", c.where("train_images"), c.full_key("train_images"));
    if (o.size < 48 || o.size > 1024) fail("{}: {}: expected 48..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    if (o.shares.size() != image_folder::kLsdClasses.size() ||
        std::any_of(o.shares.begin(), o.shares.end(), [](double s) { return !(s > 0); }))
      fail("{}: {}: expected {} positive class shares", c.where("shares"), c.full_key("shares"), image_folder::kLsdClasses.size());
    return o;
  }
};

int64_t write_split(const SynthOptions& o, const fs::path& root, const std::string& split, int64_t images, uint64_t stream) {
  for (const auto& name : image_folder::kLsdClasses) fs::create_directories(root / split / std::string(name));
  const double total = std::accumulate(o.shares.begin(), o.shares.end(), 0.0);
  for (int64_t i = 0; i < images; ++i) {
    face::SynthRng rng(mix_seed(o.seed, 0x15D0 + stream, static_cast<uint64_t>(i)));
    double u = rng.uniform() * total;
    size_t k = 0;
    while (k + 1 < o.shares.size() && u >= o.shares[k]) u -= o.shares[k++];
    const face::FaceIdentity id = face::random_identity(rng, static_cast<int>(o.size));
    // Every drawable AU may show, so each prototype is drawn in full.
    const auto intensities = face::sample_intensities(rng, kPrototype[k], face::kDrawableAus, 1.0, false);
    cv::Mat image(static_cast<int>(o.size), static_cast<int>(o.size), CV_8UC3);
    face::draw_face(image, id, intensities, rng);
    const fs::path path = root / split / std::string(image_folder::kLsdClasses[k]) / fmt::format("{:05d}.jpg", i);
    if (!cv::imwrite(path.string(), image, {cv::IMWRITE_JPEG_QUALITY, 95})) fail("{}: cannot write the JPEG", path.string());
  }
  return images;
}

SynthResult write_lsd(const SynthOptions& o, const fs::path& root) {
  SynthResult r;
  r.root = root;
  r.files = write_split(o, root, "train", o.train_images, 0) + write_split(o, root, "val", o.val_images, 1);
  r.summary = fmt::format("lsd: {} training and {} validation images of 6 expressions ({}x{} px) under train/ and val/",
                          o.train_images, o.val_images, o.size, o.size);
  return r;
}

FACET_REGISTER(synth_registry(), "lsd",
               "Drawn faces of the 6 LSD expressions in the ImageFolder layout (options: train_images, val_images, size, "
               "seed, shares)",
               synth_writer<SynthOptions>(write_lsd));

}  // namespace
}  // namespace facet::data
