// The DISFA reader ("disfa"): left-camera frames with the 8 benchmark AU occurrence labels
// (occurrence = intensity >= 2, face.md §B.2) on the standard subject-exclusive 3-fold protocol
// (§B.3). DISFA codes every frame, so label_mask is all ones; fields["intensity"] keeps the raw
// 0..5 intensities of the 8 AUs for intensity-estimation work.
//
//   data:
//     name: disfa
//     root: /data/DISFA
//     fold: 1                  # 1..3: test/val = part <fold> of face.md §B.3, train = the two others
//     images_dir: img          # <root>/<images_dir>/<SN>/<t>.png, t = label frame - 1
//     landmarks_dir: ""        # "" = none; else <root>/<landmarks_dir>/<SN>.txt (1-based frames)
//     image_size: 0            # > 0: resize every frame (and its landmarks) to this square size
//     missing_frames: error    # error | skip (see bp4d.cpp)
//
// Label frame f (1-based) is image t = f - 1: the AU literature extracts frames 0-based and pairs
// the t-th label line with image t (face.md §B.1, §F.1); an off-by-one here silently ruins F1.
// Frame names: bare <t>.png (ME-GraphAU), bare <t>.jpg (JAA-Net), then the zero-padded widths 4
// and 5 (not seen in face.md's sources, accepted for other extraction scripts), resolved once per
// subject. The frames are used as stored (no face alignment here; see bp4d.cpp). DISFA ships
// 66-point landmarks as .mat files (§B.1), which this reader does not parse: convert them to the
// text format first.
#include "data/dataset.h"
#include "data/disfa/disfa.h"
#include "data/face/au.h"
#include "data/face/face_io.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

namespace facet::data::disfa {
namespace {

namespace fs = std::filesystem;

struct ReaderOptions {
  fs::path root;
  int fold = 1;
  std::string images_dir{kImagesDir};
  std::string landmarks_dir;
  int64_t image_size = 0;
  bool skip_missing = false;

  static ReaderOptions from(const Config& c) {
    ReaderOptions o;
    o.root = c.get<std::string>("root");
    o.fold = c.get<int>("fold", o.fold);
    o.images_dir = c.get<std::string>("images_dir", o.images_dir);
    o.landmarks_dir = c.get<std::string>("landmarks_dir", o.landmarks_dir);
    o.image_size = c.get<int64_t>("image_size", o.image_size);
    const std::string missing = c.get<std::string>("missing_frames", "error");
    if (o.fold < 1 || o.fold > 3) fail("{}: {}.fold: expected 1, 2 or 3, got {}", c.where("fold"), c.prefix(), o.fold);
    if (o.image_size < 0) fail("{}: {}.image_size: expected >= 0, got {}", c.where("image_size"), c.prefix(), o.image_size);
    if (missing != "error" && missing != "skip")
      fail("{}: {}.missing_frames: expected error or skip, got \"{}\"", c.where("missing_frames"), c.prefix(), missing);
    o.skip_missing = missing == "skip";
    return o;
  }
};

// One DISFA label file: frame (1-based) -> intensity 0..5, in file order. Errors name file:line.
std::vector<std::pair<int64_t, int>> read_intensities(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the AU label file", path.string());
  std::vector<std::pair<int64_t, int>> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const size_t comma = line.find(',');
    auto parse = [&](const std::string& text, int64_t& value) {
      const size_t b = text.find_first_not_of(" \t"), e = text.find_last_not_of(" \t");
      if (b == std::string::npos) return false;
      const std::string t = text.substr(b, e - b + 1);
      char* end = nullptr;
      errno = 0;
      value = std::strtoll(t.c_str(), &end, 10);
      return errno == 0 && end == t.c_str() + t.size();
    };
    int64_t frame = 0, intensity = 0;
    if (comma == std::string::npos || !parse(line.substr(0, comma), frame) || !parse(line.substr(comma + 1), intensity))
      fail("{}:{}: expected \"frame,intensity\" (two integers), got \"{}\"", path.string(), number, line);
    if (frame < 1) fail("{}:{}: frame {}: DISFA label frames are 1-based", path.string(), number, frame);
    if (intensity < 0 || intensity > 5) fail("{}:{}: intensity {}: expected 0..5", path.string(), number, intensity);
    out.emplace_back(frame, static_cast<int>(intensity));
  }
  if (out.empty()) fail("{}: no label lines", path.string());
  return out;
}

struct Subject {
  std::string id;
  fs::path frame_dir;
  int resolved = -1;
};

class Disfa : public Dataset, public face::AuLabelSource {
 public:
  Disfa(const Config& c, const std::string& split) : o_(ReaderOptions::from(c)) {
    if (split != "train" && split != "val" && split != "test" && split != "all")
      fail("{}: disfa has the splits train, val, test and all, not \"{}\"", c.where(), split);
    const fs::path label_dir = o_.root / kLabelDir;
    if (!fs::is_directory(label_dir)) fail("{}: {}.root: {} is not a directory", c.where("root"), c.prefix(), label_dir.string());
    std::vector<std::string> ids;
    for (const auto& e : fs::directory_iterator(label_dir))
      if (e.is_directory()) ids.push_back(e.path().filename().string());
    std::sort(ids.begin(), ids.end());

    std::vector<float> labels, intensities, points;
    const auto l = face::kDisfaAus.size();
    for (const std::string& sid : ids) {
      if (!face::in_split(face::part_of(face::disfa_parts(), sid), o_.fold, split)) continue;
      Subject subject{sid, o_.root / o_.images_dir / sid, -1};
      if (!fs::is_directory(subject.frame_dir)) {
        if (o_.skip_missing) continue;
        fail("{}: no frame directory for the labels in {} (missing_frames: skip drops such subjects)",
             subject.frame_dir.string(), (label_dir / sid).string());
      }
      // Frames of the first AU file, in its order; every other file must code the same frames.
      std::vector<int64_t> frames;
      std::vector<std::map<int64_t, int>> per_au(l);
      for (size_t a = 0; a < l; ++a) {
        const fs::path file = label_dir / sid / fmt::format("{}_au{}.txt", sid, face::kDisfaAus[a]);
        for (const auto& [frame, value] : read_intensities(file)) {
          if (!per_au[a].emplace(frame, value).second) fail("{}: frame {} appears twice", file.string(), frame);
          if (a == 0) frames.push_back(frame);
        }
        if (a > 0 && per_au[a].size() != per_au[0].size())
          fail("{}: {} frames, but {}_au{}.txt has {}", file.string(), per_au[a].size(), sid, face::kDisfaAus[0], per_au[0].size());
      }
      std::vector<int64_t> probe;
      for (size_t i = 0; i < std::min<size_t>(frames.size(), 3); ++i) probe.push_back(frames[i] - 1);
      subject.resolved = names_.resolve(subject.frame_dir, probe);

      face::LandmarkTrack track;
      fs::path lm_path;
      if (!o_.landmarks_dir.empty()) {
        lm_path = o_.root / o_.landmarks_dir / (sid + ".txt");
        track = face::read_landmarks(lm_path);
        if (points_ == 0) points_ = track.points;
        if (track.points != points_)
          fail("{}: {} landmarks per frame, but earlier files have {}", lm_path.string(), track.points, points_);
      }
      const auto subject_index = static_cast<uint32_t>(subjects_.size());
      for (int64_t frame : frames) {
        if (o_.skip_missing && !names_.exists(subject.frame_dir, frame - 1, subject.resolved)) continue;
        for (size_t a = 0; a < l; ++a) {
          auto it = per_au[a].find(frame);
          if (it == per_au[a].end())
            fail("{}: no label for frame {} (coded in {}_au{}.txt)",
                 (label_dir / sid / fmt::format("{}_au{}.txt", sid, face::kDisfaAus[a])).string(), frame, sid,
                 face::kDisfaAus[0]);
          labels.push_back(it->second >= face::kDisfaOccurrenceThreshold ? 1.0f : 0.0f);
          intensities.push_back(static_cast<float>(it->second));
        }
        if (!o_.landmarks_dir.empty()) {
          auto it = track.frames.find(frame);
          if (it == track.frames.end()) fail("{}: no landmarks for frame {}", lm_path.string(), frame);
          points.insert(points.end(), it->second.begin(), it->second.end());
        }
        frames_.push_back({subject_index, frame});
      }
      subjects_.push_back(std::move(subject));
    }
    if (frames_.empty())
      fail("{}: no labelled DISFA frames of split {} (fold {}) under {}", c.where("root"), split, o_.fold, label_dir.string());
    const auto n = static_cast<int64_t>(frames_.size());
    labels_ = torch::tensor(labels).view({n, static_cast<int64_t>(l)});
    intensities_ = torch::tensor(intensities).view({n, static_cast<int64_t>(l)});
    if (points_ > 0) landmarks_ = torch::tensor(points).view({n, points_, 2});
  }

  int64_t size() const override { return static_cast<int64_t>(frames_.size()); }
  std::vector<std::string> label_names() const override { return face::au_names(face::kDisfaAus); }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched

  Sample get(int64_t index, uint64_t) const override {
    const auto& [subject_index, frame] = frames_.at(static_cast<size_t>(index));
    const Subject& subject = subjects_[subject_index];
    const fs::path path = names_.find(subject.frame_dir, frame - 1, subject.resolved);
    torch::Tensor landmarks;
    if (landmarks_.defined()) landmarks = landmarks_[index].clone();
    Sample s;
    s.fields["image"] = face::read_frame(path, o_.image_size, &landmarks);
    s.fields["labels"] = labels_[index].clone();
    s.fields["label_mask"] = torch::ones_like(s.fields["labels"]);
    s.fields["intensity"] = intensities_[index].clone();
    if (landmarks.defined()) s.fields["landmarks"] = landmarks;
    s.id = path.string();
    return s;
  }

  torch::Tensor all_labels() const override { return labels_; }
  torch::Tensor all_label_masks() const override { return torch::ones_like(labels_); }
  std::vector<std::string> au_label_names() const override { return label_names(); }

 private:
  struct FrameRef {
    uint32_t subject;
    int64_t frame;  // 1-based label frame
  };
  ReaderOptions o_;
  face::FrameNames names_{{{0, ".png"}, {0, ".jpg"}, {4, ".png"}, {4, ".jpg"}, {5, ".png"}, {5, ".jpg"}}};
  std::vector<Subject> subjects_;
  std::vector<FrameRef> frames_;
  torch::Tensor labels_, intensities_, landmarks_;
  int64_t points_ = 0;
};

FACET_REGISTER(dataset_registry(), "disfa",
               "DISFA left-camera frames, 8 AU occurrence labels (intensity >= 2), subject-exclusive 3-fold split, optional landmarks",
               [](const Config& c, const std::string& split) { return std::make_shared<Disfa>(c, split); });

}  // namespace
}  // namespace facet::data::disfa
