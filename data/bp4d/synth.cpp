// `facet data synth bp4d`: a small BP4D in the published layout (bp4d.h): per subject and task an
// AU_OCC CSV with the frame column "0" and AU columns named by number (benchmark AUs interleaved
// with uncoded ones, all 9, so only by-name selection reads it right), a few 9 (unknown) labels,
// JPEG frames of drawn faces whose AUs move visible features, and 68-point landmark files.
// Default subjects: two real IDs from each of the three parts, so every fold has train and test data.
#include "core/config.h"
#include "data/bp4d/bp4d.h"
#include "data/face/au.h"
#include "data/face/face_io.h"
#include "data/face/synth_face.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::bp4d {
namespace {

namespace fs = std::filesystem;

// AU columns of the synthetic CSVs: the 12 benchmark AUs among others that stay uncoded (9).
constexpr std::array<int, 24> kCsvAus = {1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28};

struct SynthOptions {
  std::vector<std::string> subjects = {"F001", "M001", "F003", "M002", "F004", "M003"};
  int64_t tasks = 8, frames_per_sequence = 12, size = 128;
  uint64_t seed = 0;
  bool padded = true;  // JAA-Net's %04d names; false: ME-GraphAU's bare frame numbers
  bool landmarks = true;
  double unknown_rate = 0.03;

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.subjects = c.get<std::vector<std::string>>("subjects", o.subjects);
    o.tasks = c.get<int64_t>("tasks", o.tasks);
    o.frames_per_sequence = c.get<int64_t>("frames_per_sequence", o.frames_per_sequence);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.landmarks = c.get<bool>("landmarks", o.landmarks);
    o.unknown_rate = c.get<double>("unknown_rate", o.unknown_rate);
    const std::string names = c.get<std::string>("frame_names", "padded");
    if (names != "padded" && names != "bare")
      fail("{}: {}: expected padded or bare, got \"{}\"", c.where("frame_names"), c.full_key("frame_names"), names);
    o.padded = names == "padded";
    if (o.subjects.empty()) fail("{}: {}: expected at least one subject", c.where("subjects"), c.full_key("subjects"));
    for (const auto& s : o.subjects)
      if (face::part_of(face::bp4d_parts(), s) == 0)
        fail("{}: {}: \"{}\" is not in the BP4D 3-fold lists (F001-F023, M001-M018)", c.where("subjects"), c.full_key("subjects"), s);
    if (o.tasks < 1 || o.tasks > 8) fail("{}: {}: expected 1..8, got {}", c.where("tasks"), c.full_key("tasks"), o.tasks);
    if (o.frames_per_sequence < 1)
      fail("{}: {}: expected >= 1, got {}", c.where("frames_per_sequence"), c.full_key("frames_per_sequence"), o.frames_per_sequence);
    if (o.size < 48 || o.size > 1024) fail("{}: {}: expected 48..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    if (!(o.unknown_rate >= 0 && o.unknown_rate <= 1))
      fail("{}: {}: expected 0..1, got {}", c.where("unknown_rate"), c.full_key("unknown_rate"), o.unknown_rate);
    return o;
  }
};

SynthResult write_bp4d(const SynthOptions& o, const fs::path& root) {
  fs::create_directories(root / kLabelDir);
  if (o.landmarks) fs::create_directories(root / kLandmarksDir);
  std::vector<int> coded(face::kBp4dAus.begin(), face::kBp4dAus.end());
  int64_t files = 0, frames = 0, positives = 0, unknowns = 0;
  for (size_t s = 0; s < o.subjects.size(); ++s) {
    const std::string& subject = o.subjects[s];
    face::SynthRng subject_rng(mix_seed(o.seed, 0xB4D, s));
    const face::FaceIdentity id = face::random_identity(subject_rng, static_cast<int>(o.size));
    for (int64_t task = 1; task <= o.tasks; ++task) {
      face::SynthRng rng(mix_seed(o.seed, s + 1, static_cast<uint64_t>(task)));
      const std::string seq = fmt::format("{}_T{}", subject, task);
      const fs::path frame_dir = root / kImagesDir / subject / fmt::format("T{}", task);
      fs::create_directories(frame_dir);
      std::ofstream csv(root / kLabelDir / (seq + ".csv"));
      csv << "0";
      for (int au : kCsvAus) csv << "," << au;
      csv << "\n";
      std::ofstream lm;
      if (o.landmarks) lm.open(root / kLandmarksDir / (seq + ".txt"));
      // Below 1000 so that padded (0643) and bare (643) names differ.
      const int64_t first = rng.integer(10, 900);
      for (int64_t f = first; f < first + o.frames_per_sequence; ++f) {
        const auto intensities = face::sample_intensities(rng, static_cast<face::Expression>(task), coded, 0.7, false);
        cv::Mat image(static_cast<int>(o.size), static_cast<int>(o.size), CV_8UC3);
        const auto points = face::draw_face(image, id, intensities, rng);
        const fs::path file = frame_dir / (o.padded ? fmt::format("{:04d}.jpg", f) : fmt::format("{}.jpg", f));
        if (!cv::imwrite(file.string(), image, {cv::IMWRITE_JPEG_QUALITY, 95})) fail("{}: cannot write the JPEG", file.string());
        csv << f;
        for (int au : kCsvAus) {
          int v = 9;
          if (std::find(coded.begin(), coded.end(), au) != coded.end()) {
            v = intensities.count(au) && intensities.at(au) >= 1 ? 1 : 0;
            if (rng.chance(o.unknown_rate)) v = face::kBp4dUnknown;
            positives += v == 1;
            unknowns += v == face::kBp4dUnknown;
          }
          csv << "," << v;
        }
        csv << "\n";
        if (o.landmarks) {
          std::vector<float> xy;
          for (const auto& q : points) xy.insert(xy.end(), {q.x, q.y});
          face::write_landmark_line(lm, f, xy);
        }
        ++frames;
        ++files;
      }
      csv.close();
      if (!csv) fail("{}: cannot write", (root / kLabelDir / (seq + ".csv")).string());
      files += 1 + (o.landmarks ? 1 : 0);
    }
  }
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("bp4d: {} subjects x {} tasks, {} frames ({}x{} px), {} positive and {} unknown AU labels",
                          o.subjects.size(), o.tasks, frames, o.size, o.size, positives, unknowns);
  return r;
}

FACET_REGISTER(synth_registry(), "bp4d",
               "Drawn faces with AU_OCC CSVs, JPEG frames and 68-pt landmarks (options: subjects, tasks, "
               "frames_per_sequence, size, seed, frame_names: padded|bare, landmarks, unknown_rate)",
               synth_writer<SynthOptions>(write_bp4d));

}  // namespace
}  // namespace facet::data::bp4d
