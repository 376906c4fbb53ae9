// The ABAW4 MTL reader ("abaw_mtl"): s-Aff-Wild2 frames with valence-arousal, one of 8 expressions
// and 12 AU occurrences, any of which may be missing (face.md §4.3; layout in abaw.h).
//
//   data:
//     name: abaw_mtl
//     root: /data/ABAW4
//     train_file: training_set_annotations.txt     # split train
//     val_file: validation_set_annotations.txt     # split val (the challenge's test set is unlabelled)
//     images_dir: cropped_aligned
//     image_size: 0              # > 0: resize every crop to this square size when loading
//     missing_images: error      # error: an annotated frame without a file fails when loaded;
//                                # skip: drop such frames when opening (EMMA's loader skips them)
//
// Sample fields: image [3, H, W] RGB 0..255; va [2] (valence, arousal; 0 where missing) and va_mask
// [2]; expression int64 [] (0..7 in kExpressions order, -1 = missing); labels [12] AU occurrences
// (0 where missing) and label_mask [12]. A -5 masks only its own column of va. The first line of an
// annotation file is a header and is skipped whatever it says, as every published loader does.
#include "core/log.h"
#include "data/abaw/abaw.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/face/face_io.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

namespace facet::data::abaw {
namespace {

namespace fs = std::filesystem;

struct ReaderOptions {
  fs::path root;
  std::string train_file{kTrainFile}, val_file{kValFile}, images_dir{kImagesDir};
  int64_t image_size = 0;
  bool skip_missing = false;

  static ReaderOptions from(const Config& c) {
    ReaderOptions o;
    o.root = c.get<std::string>("root");
    o.train_file = c.get<std::string>("train_file", o.train_file);
    o.val_file = c.get<std::string>("val_file", o.val_file);
    o.images_dir = c.get<std::string>("images_dir", o.images_dir);
    o.image_size = c.get<int64_t>("image_size", o.image_size);
    const std::string missing = c.get<std::string>("missing_images", "error");
    if (o.image_size < 0) fail("{}: {}: expected >= 0, got {}", c.where("image_size"), c.full_key("image_size"), o.image_size);
    if (missing != "error" && missing != "skip")
      fail("{}: {}: expected error or skip, got \"{}\"", c.where("missing_images"), c.full_key("missing_images"), missing);
    o.skip_missing = missing == "skip";
    return o;
  }
};

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

// The whole field as a number, or nullopt.
std::optional<double> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

struct Annotations {
  std::vector<std::string> images;
  std::vector<float> va, va_mask, labels, label_mask;
  std::vector<int64_t> expression;
};

Annotations read_annotations(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the annotation file", path.string());
  Annotations a;
  std::string line;
  if (!std::getline(in, line)) fail("{}: empty file (expected a header line, then one line per frame)", path.string());
  constexpr size_t kFields = 4 + kAus.size();
  for (int64_t line_no = 2; std::getline(in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    std::vector<std::string> f;
    for (size_t start = 0;;) {
      const size_t comma = line.find(',', start);
      f.push_back(trim(std::string_view(line).substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (f.size() != kFields)
      fail("{}: expected {} comma-separated fields (image, valence, arousal, expression, AU1 ... AU26), got {}", where,
           kFields, f.size());
    if (f[0].empty()) fail("{}: empty image path", where);
    a.images.push_back(f[0]);
    for (size_t k = 0; k < 2; ++k) {
      const auto v = number(f[1 + k]);
      const char* name = k == 0 ? "valence" : "arousal";
      if (!v || !((*v >= -1 && *v <= 1) || *v == kMissingVa))
        fail("{}: {}: expected a number in [-1, 1] or -5 (missing), got \"{}\"", where, name, f[1 + k]);
      const bool known = *v != kMissingVa;
      a.va.push_back(known ? static_cast<float>(*v) : 0.0f);
      a.va_mask.push_back(known ? 1.0f : 0.0f);
    }
    const auto e = number(f[3]);
    if (!e || *e != std::floor(*e) || *e < kMissingExpression || *e >= static_cast<double>(kExpressions.size()))
      fail("{}: expression: expected an integer 0..{} or -1 (missing), got \"{}\"", where, kExpressions.size() - 1, f[3]);
    a.expression.push_back(static_cast<int64_t>(*e));
    for (size_t k = 0; k < kAus.size(); ++k) {
      const auto v = number(f[4 + k]);
      if (!v || (*v != 0 && *v != 1 && *v != kMissingAu))
        fail("{}: AU{}: expected 0, 1 or -1 (missing), got \"{}\"", where, kAus[k], f[4 + k]);
      a.labels.push_back(*v == 1 ? 1.0f : 0.0f);
      a.label_mask.push_back(*v == kMissingAu ? 0.0f : 1.0f);
    }
  }
  if (a.images.empty()) fail("{}: no annotated frames after the header line", path.string());
  return a;
}

class AbawMtl : public Dataset, public face::AuLabelSource {
 public:
  AbawMtl(const Config& c, const std::string& split) : o_(ReaderOptions::from(c)) {
    if (split != "train" && split != "val")
      fail("{}: abaw_mtl has the splits train and val (the challenge's test set is unlabelled), not \"{}\"", c.where(), split);
    if (!fs::is_directory(o_.root)) fail("{}: {}: {} is not a directory", c.where("root"), c.full_key("root"), o_.root.string());
    const fs::path file = o_.root / (split == "train" ? o_.train_file : o_.val_file);
    images_root_ = o_.root / o_.images_dir;
    if (!fs::is_directory(images_root_))
      fail("{}: {}: {} is not a directory", c.where("images_dir"), c.full_key("images_dir"), images_root_.string());
    Annotations a = read_annotations(file);
    auto n = static_cast<int64_t>(a.images.size());
    const auto l = static_cast<int64_t>(kAus.size());
    va_ = torch::tensor(a.va).view({n, 2});
    va_mask_ = torch::tensor(a.va_mask).view({n, 2});
    expression_ = torch::tensor(a.expression, torch::kInt64);
    labels_ = torch::tensor(a.labels).view({n, l});
    label_mask_ = torch::tensor(a.label_mask).view({n, l});
    images_ = std::move(a.images);
    if (o_.skip_missing) {
      std::vector<int64_t> keep;
      for (int64_t i = 0; i < n; ++i)
        if (fs::is_regular_file(images_root_ / images_[static_cast<size_t>(i)])) keep.push_back(i);
      if (keep.empty()) fail("{}: none of the {} annotated frames exists under {}", file.string(), n, images_root_.string());
      if (static_cast<int64_t>(keep.size()) < n) {
        log::info("{}: {} of {} annotated frames have no image and are skipped", file.string(), n - static_cast<int64_t>(keep.size()), n);
        const torch::Tensor index = torch::tensor(keep, torch::kInt64);
        std::vector<std::string> kept;
        for (int64_t i : keep) kept.push_back(images_[static_cast<size_t>(i)]);
        images_ = std::move(kept);
        va_ = va_.index_select(0, index);
        va_mask_ = va_mask_.index_select(0, index);
        expression_ = expression_.index_select(0, index);
        labels_ = labels_.index_select(0, index);
        label_mask_ = label_mask_.index_select(0, index);
      }
    }
  }

  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  std::vector<std::string> label_names() const override { return face::au_names(kAus); }
  bool passes_eight_bit_images() const override { return true; }  // face::read_frame's image, untouched

  Sample get(int64_t index, uint64_t) const override {
    const fs::path path = images_root_ / images_.at(static_cast<size_t>(index));
    Sample s;
    s.fields["image"] = face::read_frame(path, o_.image_size, nullptr);
    s.fields["va"] = va_[index].clone();
    s.fields["va_mask"] = va_mask_[index].clone();
    s.fields["expression"] = expression_[index].clone();
    s.fields["labels"] = labels_[index].clone();
    s.fields["label_mask"] = label_mask_[index].clone();
    s.id = path.string();
    return s;
  }

  torch::Tensor all_labels() const override { return labels_; }
  torch::Tensor all_label_masks() const override { return label_mask_; }
  std::vector<std::string> au_label_names() const override { return label_names(); }

 private:
  ReaderOptions o_;
  fs::path images_root_;
  std::vector<std::string> images_;
  torch::Tensor va_, va_mask_, expression_, labels_, label_mask_;
};

FACET_REGISTER(dataset_registry(), "abaw_mtl",
               "ABAW4 MTL (s-Aff-Wild2): valence-arousal, 8 expressions, 12 AUs per frame, missing labels masked",
               [](const Config& c, const std::string& split) { return std::make_shared<AbawMtl>(c, split); });

}  // namespace
}  // namespace facet::data::abaw
