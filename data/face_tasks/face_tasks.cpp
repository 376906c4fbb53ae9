// The multi-task face reader ("face_tasks"; layout and fields in face_tasks.h): every label is
// parsed and checked when the split is opened, errors name file:line and the column; images are
// decoded in get().
//
//   data:
//     name: face_tasks
//     root: /data/faces
//     images_dir: images        # <root>/<images_dir>/<image column>
//     image_size: 0             # > 0: resize every image (and its landmarks) to this square size
//     expression_classes: 7     # expression labels must lie in 0..C-1 (or be unknown)
//     aus: []                   # AU numbers to read (au_<n>); [] = every au_ column, by number
//     attributes: []            # attribute names to read (attr_<name>); [] = every attr_ column, by name
//     check_files: true         # every image must exist when the split is opened
#include "core/csv.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/face/face_io.h"
#include "data/face_tasks/face_tasks.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace facet::data::face_tasks {
namespace {

namespace fs = std::filesystem;

struct ReaderOptions {
  fs::path root;
  std::string images_dir{kImagesDir};
  int64_t image_size = 0;
  int64_t expression_classes = 7;
  std::vector<int> aus;
  std::vector<std::string> attributes;
  bool check_files = true;

  static ReaderOptions from(const Config& c) {
    ReaderOptions o;
    o.root = c.get<std::string>("root");
    o.images_dir = c.get<std::string>("images_dir", o.images_dir);
    o.image_size = c.get<int64_t>("image_size", o.image_size);
    o.expression_classes = c.get<int64_t>("expression_classes", o.expression_classes);
    o.aus = c.get<std::vector<int>>("aus", o.aus);
    o.attributes = c.get<std::vector<std::string>>("attributes", o.attributes);
    o.check_files = c.get<bool>("check_files", o.check_files);
    if (o.image_size < 0) fail("{}: {}: expected >= 0, got {}", c.where("image_size"), c.full_key("image_size"), o.image_size);
    if (o.expression_classes < 1)
      fail("{}: {}: expected >= 1, got {}", c.where("expression_classes"), c.full_key("expression_classes"), o.expression_classes);
    return o;
  }
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool empty_cell(const CsvTable& t, size_t row, size_t col) { return trim(t.cell(row, col)).empty(); }

// AU columns au_<n>: by number, or those listed.
std::vector<std::pair<int, size_t>> au_columns(const CsvTable& t, const std::vector<int>& wanted) {
  std::vector<std::pair<int, size_t>> out;
  if (!wanted.empty()) {
    for (int au : wanted) out.emplace_back(au, t.column(fmt::format("{}{}", kAuPrefix, au)));
    return out;
  }
  for (size_t c = 0; c < t.header().size(); ++c) {
    const std::string& h = t.header()[c];
    if (h.rfind(kAuPrefix, 0) != 0) continue;
    const std::string number = h.substr(kAuPrefix.size());
    if (number.empty() || !std::all_of(number.begin(), number.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      fail("{}: column \"{}\": expected au_<AU number>", t.origin(), h);
    out.emplace_back(std::stoi(number), c);
  }
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].first == out[i - 1].first) fail("{}: AU {} has two columns", t.origin(), out[i].first);
  return out;
}

// Attribute columns attr_<name>: sorted by name (so a file's column order does not matter), or those listed.
std::vector<std::pair<std::string, size_t>> attribute_columns(const CsvTable& t, const std::vector<std::string>& wanted) {
  std::vector<std::pair<std::string, size_t>> out;
  if (!wanted.empty()) {
    for (const auto& name : wanted) out.emplace_back(name, t.column(std::string(kAttributePrefix) + name));
    return out;
  }
  for (size_t c = 0; c < t.header().size(); ++c) {
    const std::string& h = t.header()[c];
    if (h.rfind(kAttributePrefix, 0) == 0 && h.size() > kAttributePrefix.size()) out.emplace_back(h.substr(kAttributePrefix.size()), c);
  }
  std::sort(out.begin(), out.end());
  return out;
}

class FaceTasks : public Dataset, public face::AuLabelSource {
 public:
  FaceTasks(const Config& c, const std::string& split) : o_(ReaderOptions::from(c)) {
    const fs::path csv = o_.root / (split + ".csv");
    if (!fs::is_regular_file(csv)) {
      std::vector<std::string> found;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(o_.root, ec))
        if (e.path().extension() == ".csv") found.push_back(e.path().stem().string());
      std::sort(found.begin(), found.end());
      fail("{}: {}: no split file {} (splits found: {})", c.where("root"), c.full_key("root"), csv.string(),
           found.empty() ? std::string("none") : fmt::format("{}", fmt::join(found, ", ")));
    }
    const CsvTable t = CsvTable::read(csv);
    const size_t n = t.rows();
    if (n == 0) fail("{}: no rows", csv.string());
    const size_t image_col = t.column(kImageColumn);
    const auto expression_col = t.find_column(kExpressionColumn);
    const auto aus = au_columns(t, o_.aus);
    const auto attributes = attribute_columns(t, o_.attributes);
    const auto age_col = t.find_column(kAgeColumn);
    const auto landmarks_col = t.find_column(kLandmarksColumn);
    std::vector<size_t> pose_cols;
    for (const auto name : kPoseColumns)
      if (auto col = t.find_column(name)) pose_cols.push_back(*col);
    if (!pose_cols.empty() && pose_cols.size() != 3)
      fail("{}: head pose needs the three columns yaw, pitch and roll, the file has {} of them", csv.string(), pose_cols.size());
    for (const auto& [au, col] : aus) au_names_.push_back(fmt::format("AU{}", au));
    for (const auto& [name, col] : attributes) attribute_names_.push_back(name);

    std::vector<int64_t> expressions;
    std::vector<float> au_labels, au_masks, attr_labels, attr_masks, ages, age_masks, poses, pose_masks, points;
    for (size_t r = 0; r < n; ++r) {
      const std::string image{trim(t.cell(r, image_col))};
      if (image.empty()) fail("{}: column {}: empty image path", t.where(r), kImageColumn);
      const fs::path path = o_.root / o_.images_dir / image;
      if (o_.check_files && !fs::is_regular_file(path)) fail("{}: {}: no such image", t.where(r), path.string());
      paths_.push_back(path.string());
      if (expression_col) {
        const int64_t e = empty_cell(t, r, *expression_col) ? -1 : t.integer(r, *expression_col);
        if (e < -1 || e >= o_.expression_classes)
          fail("{}: column {}: expected -1 (unknown) or a class in 0..{}, got {}", t.where(r), kExpressionColumn,
               o_.expression_classes - 1, e);
        expressions.push_back(e);
      }
      for (const auto& [au, col] : aus) {
        const int64_t v = empty_cell(t, r, col) ? -1 : t.integer(r, col);
        if (v != 0 && v != 1 && v != -1 && v != face::kBp4dUnknown)
          fail("{}: column {}: expected 0, 1, or 9 / -1 / empty (unknown), got {}", t.where(r), t.header()[col], v);
        au_labels.push_back(v == 1 ? 1.0f : 0.0f);
        au_masks.push_back(v == 0 || v == 1 ? 1.0f : 0.0f);
      }
      for (const auto& [name, col] : attributes) {
        const bool unknown = empty_cell(t, r, col);
        const int64_t v = unknown ? 0 : t.integer(r, col);
        if (v != 0 && v != 1 && v != -1)
          fail("{}: column {}: expected 1 (present), 0 or -1 (absent), or empty (unknown), got {}", t.where(r), t.header()[col], v);
        attr_labels.push_back(v == 1 ? 1.0f : 0.0f);
        attr_masks.push_back(unknown ? 0.0f : 1.0f);
      }
      if (age_col) {
        const double a = t.number(r, *age_col, /*allow_missing=*/true);
        if (!std::isnan(a) && a < 0) fail("{}: column {}: expected an age >= 0, got {}", t.where(r), kAgeColumn, a);
        ages.push_back(std::isnan(a) ? 0.0f : static_cast<float>(a));
        age_masks.push_back(std::isnan(a) ? 0.0f : 1.0f);
      }
      for (size_t col : pose_cols) {
        const double a = t.number(r, col, /*allow_missing=*/true);
        poses.push_back(std::isnan(a) ? 0.0f : static_cast<float>(a));
        pose_masks.push_back(std::isnan(a) ? 0.0f : 1.0f);
      }
      if (landmarks_col) {
        if (empty_cell(t, r, *landmarks_col)) fail("{}: column {}: empty (every row needs its landmarks)", t.where(r), kLandmarksColumn);
        const std::vector<double> xy = t.numbers(r, *landmarks_col);
        if (xy.size() % 2 != 0) fail("{}: column {}: {} numbers, expected x, y pairs", t.where(r), kLandmarksColumn, xy.size());
        if (points_ == 0) points_ = static_cast<int64_t>(xy.size() / 2);
        if (static_cast<int64_t>(xy.size() / 2) != points_)
          fail("{}: column {}: {} landmarks, but the first row has {}", t.where(r), kLandmarksColumn, xy.size() / 2, points_);
        points.insert(points.end(), xy.begin(), xy.end());
      }
    }
    const auto rows = static_cast<int64_t>(n);
    if (expression_col) expressions_ = torch::tensor(expressions, torch::kInt64);
    if (!aus.empty()) {
      labels_ = torch::tensor(au_labels).view({rows, -1});
      label_masks_ = torch::tensor(au_masks).view({rows, -1});
    }
    if (!attributes.empty()) {
      attributes_ = torch::tensor(attr_labels).view({rows, -1});
      attribute_masks_ = torch::tensor(attr_masks).view({rows, -1});
    }
    if (age_col) {
      ages_ = torch::tensor(ages);
      age_masks_ = torch::tensor(age_masks);
    }
    if (!pose_cols.empty()) {
      poses_ = torch::tensor(poses).view({rows, 3});
      pose_masks_ = torch::tensor(pose_masks).view({rows, 3});
    }
    if (landmarks_col) landmarks_ = torch::tensor(points).view({rows, points_, 2});
  }

  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  // The AU names (the `labels` field); attribute metrics name theirs with `names:`.
  std::vector<std::string> label_names() const override { return au_names_; }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched
  const std::vector<std::string>& attribute_names() const { return attribute_names_; }

  Sample get(int64_t index, uint64_t) const override {
    Sample s;
    torch::Tensor landmarks;
    if (landmarks_.defined()) landmarks = landmarks_[index].clone();
    const std::string& path = paths_.at(static_cast<size_t>(index));
    s.fields["image"] = face::read_frame(path, o_.image_size, &landmarks);
    if (landmarks.defined()) s.fields["landmarks"] = landmarks;
    if (expressions_.defined()) s.fields["expression"] = expressions_[index].clone();
    if (labels_.defined()) {
      s.fields["labels"] = labels_[index].clone();
      s.fields["label_mask"] = label_masks_[index].clone();
    }
    if (attributes_.defined()) {
      s.fields["attributes"] = attributes_[index].clone();
      s.fields["attribute_mask"] = attribute_masks_[index].clone();
    }
    if (ages_.defined()) {
      s.fields["age"] = ages_[index].clone();
      s.fields["age_mask"] = age_masks_[index].clone();
    }
    if (poses_.defined()) {
      s.fields["pose"] = poses_[index].clone();
      s.fields["pose_mask"] = pose_masks_[index].clone();
    }
    s.id = path;
    return s;
  }

  torch::Tensor all_labels() const override { return require_aus(labels_); }
  torch::Tensor all_label_masks() const override { return require_aus(label_masks_); }
  std::vector<std::string> au_label_names() const override { return au_names_; }

 private:
  torch::Tensor require_aus(const torch::Tensor& t) const {
    if (!t.defined()) fail("face_tasks: {} has no au_<n> columns, so there are no AU labels to weight", o_.root.string());
    return t;
  }

  ReaderOptions o_;
  std::vector<std::string> paths_, au_names_, attribute_names_;
  torch::Tensor expressions_, labels_, label_masks_, attributes_, attribute_masks_, ages_, age_masks_, poses_, pose_masks_,
      landmarks_;
  int64_t points_ = 0;
};

FACET_REGISTER(dataset_registry(), "face_tasks",
               "Multi-task face CSV (<root>/<split>.csv + images/): expression, au_<n>, attr_<name>, age, yaw/pitch/roll, "
               "landmarks; unknown labels masked",
               [](const Config& c, const std::string& split) { return std::make_shared<FaceTasks>(c, split); });

}  // namespace
}  // namespace facet::data::face_tasks
