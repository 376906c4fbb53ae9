// The BP4D reader ("bp4d"): AU-coded frames with the 12 benchmark AU occurrence labels, on the
// standard subject-exclusive 3-fold protocol (face.md §A). Labels come from the AU_OCC CSVs, read
// by header name (column "0" = frame, "1", "2", "4", ... = AU numbers; never by position, the files
// hold many more AU columns); 9 = uncoded -> label 0 with label_mask 0.
//
//   data:
//     name: bp4d
//     root: /data/BP4D
//     fold: 1                  # 1..3: test/val = part <fold> of face.md §A.4, train = the two others
//     images_dir: img          # <root>/<images_dir>/<Subject>/<Task>/<frame>.jpg
//     landmarks_dir: ""        # "" = none; else <root>/<landmarks_dir>/<Subject>_<Task>.txt
//     image_size: 0            # > 0: resize every frame (and its landmarks) to this square size
//     missing_frames: error    # error: a labelled frame without a file fails when loaded;
//                              # skip: drop such frames (and sequences without a frame
//                              # directory) when opening; stats every frame once
//
// Frames are used as stored: this reader neither detects, crops nor aligns faces. Point it at the
// aligned crops of the preprocessing you follow (JAA-Net 200x200 similarity-aligned, §A.5, or
// ME-GraphAU's crops) or align with data/transform's landmark-aware transforms. Frame names: the
// first existing of <frame %04d>.jpg (JAA-Net), <frame>.jpg (ME-GraphAU), then the same as .png,
// resolved once per sequence on its first frames; a frame missing under that name tries the others.
// Subjects outside the three parts are ignored (the protocol has none).
#include "core/csv.h"
#include "data/bp4d/bp4d.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/face/face_io.h"

#include <algorithm>
#include <filesystem>
#include <set>

namespace facet::data::bp4d {
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

struct Sequence {
  std::string subject, task;
  fs::path frame_dir;
  int resolved = -1;  // FrameNames candidate of this sequence's files
};

class Bp4d : public Dataset, public face::AuLabelSource {
 public:
  Bp4d(const Config& c, const std::string& split) : o_(ReaderOptions::from(c)) {
    if (split != "train" && split != "val" && split != "test" && split != "all")
      fail("{}: bp4d has the splits train, val, test and all, not \"{}\"", c.where(), split);
    const fs::path label_dir = o_.root / kLabelDir;
    if (!fs::is_directory(label_dir)) fail("{}: {}.root: {} is not a directory", c.where("root"), c.prefix(), label_dir.string());
    std::vector<fs::path> csvs;
    for (const auto& e : fs::directory_iterator(label_dir))
      if (e.is_regular_file() && e.path().extension() == ".csv") csvs.push_back(e.path());
    std::sort(csvs.begin(), csvs.end());

    std::vector<float> labels, masks, points;
    for (const fs::path& csv : csvs) {
      const std::string stem = csv.stem().string();
      const size_t cut = stem.find('_');
      if (cut == std::string::npos) continue;  // not <Subject>_<Task>.csv
      Sequence seq{stem.substr(0, cut), stem.substr(cut + 1), {}, -1};
      if (!face::in_split(face::part_of(face::bp4d_parts(), seq.subject), o_.fold, split)) continue;
      seq.frame_dir = o_.root / o_.images_dir / seq.subject / seq.task;
      if (!fs::is_directory(seq.frame_dir)) {
        if (o_.skip_missing) continue;
        fail("{}: no frame directory for the labels in {} (missing_frames: skip drops such sequences)",
             seq.frame_dir.string(), csv.string());
      }

      const CsvTable t = CsvTable::read(csv);
      const size_t frame_col = t.column(kFrameColumn);
      std::vector<size_t> au_cols;
      for (int au : face::kBp4dAus) au_cols.push_back(t.column(std::to_string(au)));
      std::vector<int64_t> frames;
      std::set<int64_t> seen;
      for (size_t r = 0; r < t.rows(); ++r) {
        const int64_t frame = t.integer(r, frame_col);
        if (frame < 0) fail("{}: column {}: negative frame number {}", t.where(r), kFrameColumn, frame);
        if (!seen.insert(frame).second) fail("{}: frame {} appears twice", t.where(r), frame);
        frames.push_back(frame);
      }
      if (frames.empty()) continue;  // an empty coding file: nothing to learn from
      const std::vector<int64_t> probe(frames.begin(), frames.begin() + std::min<size_t>(frames.size(), 3));
      seq.resolved = names_.resolve(seq.frame_dir, probe);

      face::LandmarkTrack track;
      fs::path lm_path;
      if (!o_.landmarks_dir.empty()) {
        lm_path = o_.root / o_.landmarks_dir / (stem + ".txt");
        track = face::read_landmarks(lm_path);
        if (points_ == 0) points_ = track.points;
        if (track.points != points_)
          fail("{}: {} landmarks per frame, but earlier files have {}", lm_path.string(), track.points, points_);
      }
      const auto seq_index = static_cast<uint32_t>(sequences_.size());
      for (size_t r = 0; r < t.rows(); ++r) {
        const int64_t frame = frames[r];
        if (o_.skip_missing && !names_.exists(seq.frame_dir, frame, seq.resolved)) continue;
        for (size_t a = 0; a < au_cols.size(); ++a) {
          const int64_t v = t.integer(r, au_cols[a]);
          if (v != 0 && v != 1 && v != face::kBp4dUnknown)
            fail("{}: column {}: expected 0, 1 or 9 (unknown), got {}", t.where(r), t.header()[au_cols[a]], v);
          labels.push_back(v == 1 ? 1.0f : 0.0f);
          masks.push_back(v == face::kBp4dUnknown ? 0.0f : 1.0f);
        }
        if (!o_.landmarks_dir.empty()) {
          auto it = track.frames.find(frame);
          if (it == track.frames.end()) fail("{}: no landmarks for frame {} (labelled in {})", lm_path.string(), frame, t.where(r));
          points.insert(points.end(), it->second.begin(), it->second.end());
        }
        frames_.push_back({seq_index, frame});
      }
      sequences_.push_back(std::move(seq));
    }
    if (frames_.empty())
      fail("{}: no labelled BP4D frames of split {} (fold {}) under {}", c.where("root"), split, o_.fold, label_dir.string());
    const auto n = static_cast<int64_t>(frames_.size());
    const auto l = static_cast<int64_t>(face::kBp4dAus.size());
    labels_ = torch::tensor(labels).view({n, l});
    masks_ = torch::tensor(masks).view({n, l});
    if (points_ > 0) landmarks_ = torch::tensor(points).view({n, points_, 2});
  }

  int64_t size() const override { return static_cast<int64_t>(frames_.size()); }
  std::vector<std::string> label_names() const override { return face::au_names(face::kBp4dAus); }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched

  Sample get(int64_t index, uint64_t) const override {
    const auto& [seq_index, frame] = frames_.at(static_cast<size_t>(index));
    const Sequence& seq = sequences_[seq_index];
    const fs::path path = names_.find(seq.frame_dir, frame, seq.resolved);
    torch::Tensor landmarks;
    if (landmarks_.defined()) landmarks = landmarks_[index].clone();
    Sample s;
    s.fields["image"] = face::read_frame(path, o_.image_size, &landmarks);
    s.fields["labels"] = labels_[index].clone();
    s.fields["label_mask"] = masks_[index].clone();
    if (landmarks.defined()) s.fields["landmarks"] = landmarks;
    s.id = path.string();
    return s;
  }

  torch::Tensor all_labels() const override { return labels_; }
  torch::Tensor all_label_masks() const override { return masks_; }
  std::vector<std::string> au_label_names() const override { return label_names(); }

 private:
  struct FrameRef {
    uint32_t sequence;
    int64_t frame;
  };
  ReaderOptions o_;
  face::FrameNames names_{{{4, ".jpg"}, {0, ".jpg"}, {4, ".png"}, {0, ".png"}}};
  std::vector<Sequence> sequences_;
  std::vector<FrameRef> frames_;
  torch::Tensor labels_, masks_, landmarks_;
  int64_t points_ = 0;
};

FACET_REGISTER(dataset_registry(), "bp4d",
               "BP4D AU-coded frames, 12 AU occurrence labels (9 masked), subject-exclusive 3-fold split, optional landmarks",
               [](const Config& c, const std::string& split) { return std::make_shared<Bp4d>(c, split); });

}  // namespace
}  // namespace facet::data::bp4d
