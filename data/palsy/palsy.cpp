// The facial palsy reader ("palsy"): graded face images in the layout of palsy.h, one sample per
// labels.csv row of the split: fields image [3, H, W] RGB 0..255, label int64 [] (the 0-based grade)
// and, when landmark files exist, landmarks [K, 2].
//
//   data:
//     name: palsy
//     root: /data/palsy
//     grades: 6                # House-Brackmann I..VI -> 0..5; a grade outside 0..grades-1 is an error
//     grade_names: []          # for metric tables; default HB-I..HB-VI for 6 grades, else grade0..
//     landmarks: auto          # auto: <root>/landmarks.txt, else `facet data align`'s landmarks.txt
//                              # files under <root>/images/, else none; none; or a file under <root>
//     image_size: 0            # > 0: resize every image (and its landmarks) to this square size
//
// Every row is validated when the dataset opens, whichever split is asked for (grade range, split
// name, duplicate images; the images of the split must exist), and errors name labels.csv:line.
// With landmarks, every image of the split needs a line. Images are used as stored: align them
// first (`facet data align`, or the face_align transform from the landmarks). When labels.csv has a
// subject column, a subject in more than one split is reported (the split should be
// subject-exclusive, as clinical evaluations are).
#include "core/csv.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/face/face_io.h"
#include "data/palsy/palsy.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

namespace facet::data {
namespace {

namespace fs = std::filesystem;

struct ReaderOptions {
  fs::path root;
  int64_t grades = palsy::kHouseBrackmannGrades;
  std::vector<std::string> grade_names;
  std::string landmarks = "auto";
  int64_t image_size = 0;

  static ReaderOptions from(const Config& c) {
    ReaderOptions o;
    o.root = c.get<std::string>("root");
    o.grades = c.get<int64_t>("grades", o.grades);
    o.grade_names = c.get<std::vector<std::string>>("grade_names", {});
    o.landmarks = c.get<std::string>("landmarks", o.landmarks);
    o.image_size = c.get<int64_t>("image_size", o.image_size);
    if (o.grades < 2) fail("{}: {}.grades: expected at least 2 grades, got {}", c.where("grades"), c.prefix(), o.grades);
    if (!o.grade_names.empty() && static_cast<int64_t>(o.grade_names.size()) != o.grades)
      fail("{}: {}.grade_names: {} names for {} grades", c.where("grade_names"), c.prefix(), o.grade_names.size(), o.grades);
    if (o.grade_names.empty()) {
      static const char* roman[] = {"I", "II", "III", "IV", "V", "VI"};
      for (int64_t g = 0; g < o.grades; ++g)
        o.grade_names.push_back(o.grades == palsy::kHouseBrackmannGrades ? fmt::format("HB-{}", roman[g]) : fmt::format("grade{}", g));
    }
    if (o.landmarks.empty()) fail("{}: {}.landmarks: expected auto, none or a file under the root", c.where("landmarks"), c.prefix());
    if (o.image_size < 0) fail("{}: {}.image_size: expected >= 0, got {}", c.where("image_size"), c.prefix(), o.image_size);
    return o;
  }
};

// Lines "<name> x1 y1 ... xK yK" of one landmark file; names are prefixed with `folder` (the file's
// folder relative to the images directory), so they compare with labels.csv's image column.
void read_named_landmarks(const fs::path& path, const fs::path& folder, int64_t& points,
                          std::unordered_map<std::string, std::pair<std::vector<float>, std::string>>& out) {
  for (auto& line : face::read_landmark_lines(path, "an image name", "name")) {
    const auto k = static_cast<int64_t>(line.xy.size() / 2);
    const std::string where = fmt::format("{}:{}", path.string(), line.number);
    if (points == 0) points = k;
    if (k != points) fail("{}: {} points, but earlier lines have {}", where, k, points);
    const std::string name = (folder / line.key).lexically_normal().generic_string();
    auto [it, fresh] = out.emplace(name, std::make_pair(std::move(line.xy), where));
    if (!fresh) fail("{}: image {} already has landmarks at {}", where, line.key, it->second.second);
  }
}

class Palsy : public Dataset {
 public:
  Palsy(const Config& c, const std::string& split) : o_(ReaderOptions::from(c)) {
    if (split != "train" && split != "val" && split != "test" && split != "all")
      fail("{}: palsy has the splits train, val, test and all, not \"{}\"", c.where(), split);
    const fs::path labels_path = o_.root / palsy::kLabels;
    const fs::path images = o_.root / palsy::kImagesDir;
    if (!fs::is_regular_file(labels_path))
      fail("{}: {}.root: no {} (columns image, grade, split)", c.where("root"), c.prefix(), labels_path.string());
    if (!fs::is_directory(images)) fail("{}: {}.root: {} is not a directory", c.where("root"), c.prefix(), images.string());

    // Landmarks by image path relative to images/.
    std::unordered_map<std::string, std::pair<std::vector<float>, std::string>> marks;
    std::string marks_origin;
    if (o_.landmarks != "none") {
      const fs::path named = o_.root / (o_.landmarks == "auto" ? std::string(palsy::kLandmarks) : o_.landmarks);
      if (o_.landmarks != "auto" && !fs::is_regular_file(named))
        fail("{}: {}.landmarks: {} does not exist", c.where("landmarks"), c.prefix(), named.string());
      if (fs::is_regular_file(named)) {
        read_named_landmarks(named, "", points_, marks);
        marks_origin = named.string();
      } else {
        std::vector<fs::path> aligned;
        for (const auto& e : fs::recursive_directory_iterator(images))
          if (e.is_regular_file() && e.path().filename() == palsy::kLandmarks) aligned.push_back(e.path());
        std::sort(aligned.begin(), aligned.end());
        for (const fs::path& p : aligned) read_named_landmarks(p, fs::relative(p.parent_path(), images), points_, marks);
        if (!aligned.empty()) marks_origin = fmt::format("the landmarks.txt files under {}", images.string());
      }
    }

    const CsvTable t = CsvTable::read(labels_path);
    const size_t image_col = t.column("image"), grade_col = t.column("grade"), split_col = t.column("split");
    const auto subject_col = t.find_column("subject");
    std::map<std::string, std::string> seen;              // image -> where
    std::map<std::string, std::set<std::string>> subjects;  // subject -> splits
    std::vector<float> points;
    std::vector<int64_t> grades;
    for (size_t r = 0; r < t.rows(); ++r) {
      const std::string image = fs::path(t.cell(r, image_col)).lexically_normal().generic_string();
      if (image.empty() || image == ".") fail("{}: column image: empty image name", t.where(r));
      const int64_t grade = t.integer(r, grade_col);
      if (grade < 0 || grade >= o_.grades)
        fail("{}: column grade: expected 0..{} (0-based, {} grades), got {}", t.where(r), o_.grades - 1, o_.grades, grade);
      const std::string& row_split = t.cell(r, split_col);
      if (row_split != "train" && row_split != "val" && row_split != "test")
        fail("{}: column split: expected train, val or test, got \"{}\"", t.where(r), row_split);
      if (auto [it, fresh] = seen.emplace(image, t.where(r)); !fresh)
        fail("{}: image {} is already listed at {}", t.where(r), image, it->second);
      if (subject_col) subjects[t.cell(r, *subject_col)].insert(row_split);
      if (split != "all" && row_split != split) continue;
      const fs::path file = images / image;
      if (!fs::is_regular_file(file)) fail("{}: {}: no such image file", t.where(r), file.string());
      if (!marks_origin.empty()) {
        auto it = marks.find(image);
        if (it == marks.end()) fail("{}: no landmarks for {} (labelled at {})", marks_origin, image, t.where(r));
        points.insert(points.end(), it->second.first.begin(), it->second.first.end());
      }
      files_.push_back(file);
      grades.push_back(grade);
    }
    for (const auto& [subject, in] : subjects)
      if (in.size() > 1)
        log::warn("{}: subject {} appears in the splits {}: the evaluation is not subject-exclusive", labels_path.string(),
                  subject, fmt::join(in, ", "));
    if (files_.empty()) fail("{}: no images of split {} in {}", c.where("root"), split, labels_path.string());
    const auto n = static_cast<int64_t>(files_.size());
    grades_ = torch::tensor(grades, torch::kInt64);
    if (!marks_origin.empty()) landmarks_ = torch::tensor(points).view({n, points_, 2});
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  std::vector<std::string> label_names() const override { return o_.grade_names; }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched

  Sample get(int64_t index, uint64_t) const override {
    const fs::path& path = files_.at(static_cast<size_t>(index));
    torch::Tensor landmarks;
    if (landmarks_.defined()) landmarks = landmarks_[index].clone();
    Sample s;
    s.fields["image"] = face::read_frame(path, o_.image_size, &landmarks);
    s.fields["label"] = grades_[index].clone();
    if (landmarks.defined()) s.fields["landmarks"] = landmarks;
    s.id = path.string();
    return s;
  }

 private:
  ReaderOptions o_;
  std::vector<fs::path> files_;
  torch::Tensor grades_, landmarks_;
  int64_t points_ = 0;
};

FACET_REGISTER(dataset_registry(), "palsy",
               "Facial palsy severity images: labels.csv (image, grade, split), images/, optional landmarks "
               "(House-Brackmann I..VI -> 0..5 by default)",
               [](const Config& c, const std::string& split) { return std::make_shared<Palsy>(c, split); });

}  // namespace
}  // namespace facet::data
