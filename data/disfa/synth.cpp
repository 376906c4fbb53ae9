// `facet data synth disfa`: a small DISFA in the layout of disfa.h: per subject one label file per
// coded AU ("frame,intensity", 1-based frames, intensities 0..5 including sub-threshold 1s), the
// left-camera frames as 0-based PNGs (ME-GraphAU's extraction; JPEG with ext: jpg) of drawn faces
// whose AUs move visible features, and 68-point landmark files. Default subjects: two real IDs
// from each of the three parts. Frames come in short runs of one expression, as in the videos.
#include "core/config.h"
#include "data/disfa/disfa.h"
#include "data/face/au.h"
#include "data/face/face_io.h"
#include "data/face/synth_face.h"
#include "data/sampler.h"
#include "data/synth.h"

#include "data/disfa/videos.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::disfa {
namespace {

namespace fs = std::filesystem;

struct SynthOptions {
  std::vector<std::string> subjects = {"SN001", "SN002", "SN006", "SN011", "SN003", "SN004"};
  int64_t frames_per_subject = 24, size = 128;
  uint64_t seed = 0;
  bool padded = false;  // bare 0-based names as in face.md §B.1; padded: %04d
  std::string ext = ".png";
  bool landmarks = true;
  bool videos = false;  // the release's form: Videos_LeftCamera/LeftVideo<SN>_comp.avi (Motion JPEG here)

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.subjects = c.get<std::vector<std::string>>("subjects", o.subjects);
    o.frames_per_subject = c.get<int64_t>("frames_per_subject", o.frames_per_subject);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    o.landmarks = c.get<bool>("landmarks", o.landmarks);
    o.videos = c.get<bool>("videos", o.videos);
    const std::string names = c.get<std::string>("frame_names", "bare");
    if (names != "padded" && names != "bare")
      fail("{}: {}: expected padded or bare, got \"{}\"", c.where("frame_names"), c.full_key("frame_names"), names);
    o.padded = names == "padded";
    const std::string ext = c.get<std::string>("ext", "png");
    if (ext != "png" && ext != "jpg") fail("{}: {}: expected png or jpg, got \"{}\"", c.where("ext"), c.full_key("ext"), ext);
    o.ext = "." + ext;
    if (o.subjects.empty()) fail("{}: {}: expected at least one subject", c.where("subjects"), c.full_key("subjects"));
    for (const auto& s : o.subjects)
      if (face::part_of(face::disfa_parts(), s) == 0)
        fail("{}: {}: \"{}\" is not one of the 27 DISFA subjects of the 3-fold lists", c.where("subjects"), c.full_key("subjects"), s);
    if (o.frames_per_subject < 1)
      fail("{}: {}: expected >= 1, got {}", c.where("frames_per_subject"), c.full_key("frames_per_subject"), o.frames_per_subject);
    if (o.size < 48 || o.size > 1024) fail("{}: {}: expected 48..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    return o;
  }
};

SynthResult write_disfa(const SynthOptions& o, const fs::path& root) {
  if (o.landmarks) fs::create_directories(root / kLandmarksDir);
  const std::vector<int> coded(kCodedAus.begin(), kCodedAus.end());
  int64_t files = 0, frames = 0, positives = 0;
  for (size_t s = 0; s < o.subjects.size(); ++s) {
    const std::string& sid = o.subjects[s];
    face::SynthRng rng(mix_seed(o.seed, 0xD15FA, s));
    const face::FaceIdentity id = face::random_identity(rng, static_cast<int>(o.size));
    const fs::path label_dir = root / kLabelDir / sid, frame_dir = root / kImagesDir / sid;
    fs::create_directories(label_dir);
    cv::VideoWriter video;
    if (o.videos) {
      const fs::path file = root / kVideosDir / fmt::format("LeftVideo{}_comp.avi", sid);
      fs::create_directories(file.parent_path());
      const int side = static_cast<int>(o.size);
      if (!video.open(file.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 20.0, cv::Size(side, side)))
        fail("{}: cannot write the video", file.string());
    } else {
      fs::create_directories(frame_dir);
    }
    std::vector<std::ofstream> label_files;
    for (int au : kCodedAus) label_files.emplace_back(label_dir / fmt::format("{}_au{}.txt", sid, au));
    std::ofstream lm;
    if (o.landmarks) lm.open(root / kLandmarksDir / (sid + ".txt"));
    auto expression = face::Expression::kNeutral;
    for (int64_t f = 1; f <= o.frames_per_subject; ++f) {
      if ((f - 1) % 6 == 0) expression = static_cast<face::Expression>(rng.integer(0, face::kExpressions - 1));
      const auto intensities = face::sample_intensities(rng, expression, coded, 0.75, true);
      cv::Mat image(static_cast<int>(o.size), static_cast<int>(o.size), CV_8UC3);
      const auto points = face::draw_face(image, id, intensities, rng);
      const int64_t t = f - 1;  // 0-based image index for 1-based label frame f
      if (o.videos) {
        video.write(image);
      } else {
        const fs::path file = frame_dir / ((o.padded ? fmt::format("{:04d}", t) : std::to_string(t)) + o.ext);
        if (!cv::imwrite(file.string(), image)) fail("{}: cannot write the frame", file.string());
      }
      for (size_t a = 0; a < kCodedAus.size(); ++a) {
        const auto it = intensities.find(kCodedAus[a]);
        const int v = it == intensities.end() ? 0 : it->second;
        label_files[a] << f << "," << v << "\n";
        if (std::find(face::kDisfaAus.begin(), face::kDisfaAus.end(), kCodedAus[a]) != face::kDisfaAus.end())
          positives += v >= face::kDisfaOccurrenceThreshold;
      }
      if (o.landmarks) {
        std::vector<float> xy;
        for (const auto& q : points) xy.insert(xy.end(), {q.x, q.y});
        face::write_landmark_line(lm, f, xy);
      }
      ++frames;
      ++files;
    }
    for (auto& lf : label_files) {
      lf.close();
      if (!lf) fail("{}: cannot write a label file", label_dir.string());
    }
    files += static_cast<int64_t>(kCodedAus.size()) + (o.landmarks ? 1 : 0);
  }
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("disfa: {} subjects, {} frames ({}x{} px), {} positive benchmark-AU labels (intensity >= 2)",
                          o.subjects.size(), frames, o.size, o.size, positives);
  return r;
}

FACET_REGISTER(synth_registry(), "disfa",
               "Drawn faces with per-AU intensity files, 0-based left-camera frames and 68-pt landmarks (options: "
               "subjects, frames_per_subject, size, seed, frame_names: bare|padded, ext: png|jpg, landmarks, videos: the "
               "release's left-camera AVIs instead of frames)",
               synth_writer<SynthOptions>(write_disfa));

}  // namespace
}  // namespace facet::data::disfa
