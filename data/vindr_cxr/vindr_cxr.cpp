// The VinDr-CXR reader ("vindr_cxr"): chest radiographs with 28 image-level labels (22 local
// findings + 6 global diagnoses) and the findings' boxes, from the DICOM release or from the
// common preprocessed PNG/JPEG copies with the same CSVs. Facts: medical.md §A.
//
//   data:
//     name: vindr_cxr
//     root: /data/vindr-cxr/1.0.0
//     image_format: dicom   # dicom, png or jpg: preprocessed copies at <image_dir>/<train|test>/<image_id>.<ext>
//     image_dir: ""         # default: root
//     original_sizes: ""    # png/jpg: CSV of image_id and the DICOM grid's size, columns (dim0, dim1)
//                           # as the Kaggle resized copies ship them, or (height, width); the CSV boxes are
//                           # in that grid. Or boxes_in_image_pixels: true if they were already rescaled.
//     intensity: minmax     # DICOM only: minmax (each image to 0..255, the VinBigData practice),
//                           # window (the file's Window Center/Width to 0..255; minmax without one), raw
//     image_size: 0         # > 0: resize to image_size x image_size; boxes follow per axis
//     readers: union        # the three radiologists of a train image: each (a sample per reader),
//                           # union (all their boxes) or fused (same-class boxes clustered and averaged)
//     label_vote: any       # train labels over readers (union, fused): any or majority
//     fuse_iou: 0.25        # fused: a box joins a cluster of its class at this IoU with the cluster's mean
//     val_fraction: 0.0     # "val": this share of the train images (by a hash of the id), taken out of "train"
//
// MONOCHROME1 files are inverted so that bright means dense everywhere. "No finding" is
// recomputed after voting: 1 exactly when no other label is positive, so an image is never both
// normal and abnormal. Test labels and boxes are the 5-radiologist consensus, used as they are.
#include "core/csv.h"
#include "core/text.h"
#include "data/dataset.h"
#include "data/image/image_io.h"
#include "data/vindr_cxr/vindr_cxr.h"

#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <tuple>

namespace facet::data::vindr_cxr {
namespace {

namespace fs = std::filesystem;

using Labels = std::array<float, kNumLabels>;

struct Box {
  std::array<float, 4> xyxy;  // pixels of the DICOM grid
  int64_t label;              // index into kLocalLabels
  int64_t reader;             // the N of "RN"; 0 for the test consensus
};

struct ReaderView {
  Labels labels{};
  std::vector<Box> boxes;
};

struct Entry {
  std::string image_id;
  int64_t reader = 0;  // "each": the reader this sample shows; 0 otherwise
  Labels labels{};
  std::vector<Box> boxes;
};

int64_t parse_reader(const CsvTable& t, size_t row, std::optional<size_t> col) {
  if (!col) return 0;
  const std::string& r = t.cell(row, *col);
  int64_t n = 0;
  const bool ok = r.size() >= 2 && r[0] == 'R' &&
                  std::all_of(r.begin() + 1, r.end(), [](unsigned char c) { return std::isdigit(c); });
  if (ok) n = std::stoll(r.substr(1));
  if (!ok || n <= 0) fail("{}: rad_id: expected R1, R2, ..., got \"{}\"", t.where(row), r);
  return n;
}

float iou(const std::array<float, 4>& a, const std::array<float, 4>& b) {
  const float w = std::max(0.f, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const float h = std::max(0.f, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const float inter = w * h;
  const float uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.f;
}

// Same-class boxes of different readers that overlap by `threshold` become one box, the mean of
// the cluster (a box of a reader already in the cluster starts a new one); a reader's own
// near-duplicates (IoU >= 0.9) count once. Medical.md §A.5 (the luolib clustering).
std::vector<Box> fuse_boxes(const std::vector<Box>& boxes, float threshold) {
  struct Cluster {
    std::array<double, 4> sum{};
    std::vector<int64_t> readers;
    std::array<float, 4> mean() const {
      const double n = static_cast<double>(readers.size());
      return {float(sum[0] / n), float(sum[1] / n), float(sum[2] / n), float(sum[3] / n)};
    }
  };
  std::vector<Box> out;
  for (size_t label = 0; label < kLocalLabels.size(); ++label) {
    std::vector<Box> kept;  // de-duplicated per reader
    for (const Box& b : boxes) {
      if (b.label != static_cast<int64_t>(label)) continue;
      const bool duplicate = std::any_of(kept.begin(), kept.end(), [&](const Box& k) {
        return k.reader == b.reader && iou(k.xyxy, b.xyxy) >= 0.9f;
      });
      if (!duplicate) kept.push_back(b);
    }
    std::vector<Cluster> clusters;
    for (const Box& b : kept) {
      Cluster* best = nullptr;
      float best_iou = threshold;
      for (auto& c : clusters) {
        if (std::find(c.readers.begin(), c.readers.end(), b.reader) != c.readers.end()) continue;
        const float v = iou(c.mean(), b.xyxy);
        if (v >= best_iou) best_iou = v, best = &c;
      }
      if (!best) best = &clusters.emplace_back();
      for (int i = 0; i < 4; ++i) best->sum[static_cast<size_t>(i)] += b.xyxy[static_cast<size_t>(i)];
      best->readers.push_back(b.reader);
    }
    for (const auto& c : clusters) out.push_back({c.mean(), static_cast<int64_t>(label), 0});
  }
  return out;
}

// An image is "No finding" exactly when nothing else is positive.
void settle_no_finding(Labels& labels) {
  const bool abnormal = std::any_of(labels.begin(), labels.end() - 1, [](float v) { return v > 0; });
  labels.back() = abnormal ? 0.f : 1.f;
}

class VinDrCxr : public Dataset {
 public:
  VinDrCxr(const Config& c, const std::string& split)
      : root_(c.get<std::string>("root")),
        format_(c.get<std::string>("image_format", "dicom")),
        intensity_(c.get<std::string>("intensity", "minmax")),
        image_size_(c.get<int64_t>("image_size", 0)) {
    const fs::path image_dir = c.has("image_dir") ? fs::path(c.get<std::string>("image_dir")) : root_;
    const std::string readers = c.get<std::string>("readers", "union");
    const std::string vote = c.get<std::string>("label_vote", "any");
    const auto fuse_iou = static_cast<float>(c.get<double>("fuse_iou", 0.25));
    const double val_fraction = c.get<double>("val_fraction", 0.0);
    const bool boxes_in_image = c.get<bool>("boxes_in_image_pixels", false);
    const std::string sizes_csv = c.get<std::string>("original_sizes", "");
    auto one_of = [&](const std::string& key, const std::string& value, std::initializer_list<const char*> allowed) {
      for (const char* a : allowed)
        if (value == a) return;
      fail("{}: {}: expected one of {}, got \"{}\"", c.where(key), c.full_key(key),
           join(std::vector<std::string>(allowed.begin(), allowed.end())), value);
    };
    one_of("image_format", format_, {"dicom", "png", "jpg"});
    one_of("intensity", intensity_, {"minmax", "window", "raw"});
    one_of("readers", readers, {"each", "union", "fused"});
    one_of("label_vote", vote, {"any", "majority"});
    if (split != "train" && split != "val" && split != "test")
      fail("{}: vindr_cxr has the splits train, val (with val_fraction) and test, not \"{}\"", c.where(), split);
    if (!(val_fraction >= 0 && val_fraction < 1))
      fail("{}: {}: expected 0 <= v < 1, got {}", c.where("val_fraction"), c.full_key("val_fraction"), val_fraction);
    if (split == "val" && val_fraction == 0)
      fail("{}: vindr_cxr has no official val split; set {} (e.g. 0.1) to hold out train images", c.where(),
           c.full_key("val_fraction"));
    if (format_ != "dicom" && sizes_csv.empty() && !boxes_in_image)
      fail("{}: {} {}: the CSV boxes are in the DICOM grid; give {} (a CSV of each image's original size) or "
           "set boxes_in_image_pixels: true",
           c.where("image_format"), c.full_key("image_format"), format_, c.full_key("original_sizes"));
    const std::string file_split = split == "test" ? "test" : "train";
    files_dir_ = image_dir / file_split;
    if (!sizes_csv.empty()) read_original_sizes(sizes_csv);

    const fs::path labels_csv = root_ / "annotations" / ("image_labels_" + file_split + ".csv");
    const fs::path boxes_csv = root_ / "annotations" / ("annotations_" + file_split + ".csv");
    for (const auto& p : {labels_csv, boxes_csv})
      if (!fs::exists(p)) fail("{}: {}: {} does not exist", c.where("root"), c.full_key("root"), p.string());

    // image id -> reader -> what that reader said.
    std::map<std::string, std::map<int64_t, ReaderView>> images;
    const CsvTable labels = CsvTable::read(labels_csv);
    {
      const size_t id_col = labels.column("image_id");
      const auto rad_col = labels.find_column("rad_id");
      std::array<size_t, kNumLabels> cols{};
      for (size_t i = 0; i < kNumLabels; ++i) {
        const std::string_view name = i < kLocalLabels.size() ? kLocalLabels[i] : kGlobalLabels[i - kLocalLabels.size()];
        auto col = labels.find_column(name);
        if (!col && name == kGlobalLabels[4]) col = labels.find_column(kOtherDiseaseTestSpelling);
        cols[i] = col ? *col : labels.column(name);  // the error lists the header
      }
      for (size_t r = 0; r < labels.rows(); ++r) {
        const int64_t reader = parse_reader(labels, r, rad_col);
        auto& views = images[labels.cell(r, id_col)];
        if (views.count(reader))
          fail("{}: image {} has a second row for {}", labels.where(r), labels.cell(r, id_col),
               reader ? fmt::format("reader R{}", reader) : std::string("the consensus"));
        ReaderView& v = views[reader];
        for (size_t i = 0; i < kNumLabels; ++i) {
          const int64_t value = labels.integer(r, cols[i]);
          if (value != 0 && value != 1) fail("{}: {}: expected 0 or 1, got {}", labels.where(r), labels.header()[cols[i]], value);
          v.labels[i] = static_cast<float>(value);
        }
      }
    }
    const CsvTable boxes = CsvTable::read(boxes_csv);
    {
      const size_t id_col = boxes.column("image_id"), class_col = boxes.column("class_name");
      const auto rad_col = boxes.find_column("rad_id");
      const std::array<size_t, 4> xy = {boxes.column("x_min"), boxes.column("y_min"), boxes.column("x_max"), boxes.column("y_max")};
      for (size_t r = 0; r < boxes.rows(); ++r) {
        const std::string& name = boxes.cell(r, class_col);
        if (name == kNoFinding) continue;
        const auto label = std::find(kLocalLabels.begin(), kLocalLabels.end(), name);
        if (label == kLocalLabels.end())
          fail("{}: class_name: \"{}\" is not one of the 22 local labels (or \"No finding\")", boxes.where(r), name);
        const int64_t reader = parse_reader(boxes, r, rad_col);
        auto image = images.find(boxes.cell(r, id_col));
        if (image == images.end() || !image->second.count(reader))
          fail("{}: image {} has no row in {}{}", boxes.where(r), boxes.cell(r, id_col), labels_csv.filename().string(),
               reader ? fmt::format(" for reader R{}", reader) : std::string());
        Box b{{}, label - kLocalLabels.begin(), reader};
        for (size_t i = 0; i < 4; ++i) b.xyxy[i] = static_cast<float>(boxes.number(r, xy[i]));
        if (!(b.xyxy[2] >= b.xyxy[0] && b.xyxy[3] >= b.xyxy[1] && b.xyxy[0] >= 0 && b.xyxy[1] >= 0))
          fail("{}: box ({}, {}, {}, {}) is not x_min <= x_max, y_min <= y_max, non-negative", boxes.where(r), b.xyxy[0],
               b.xyxy[1], b.xyxy[2], b.xyxy[3]);
        image->second[reader].boxes.push_back(b);
      }
    }

    for (auto& [id, views] : images) {
      if (split != "test" && val_fraction > 0 && (id_fraction(id) < val_fraction) != (split == "val")) continue;
      if (split == "test" || views.size() == 1 || readers == "each") {
        for (auto& [reader, v] : views) {
          Entry e{id, reader, v.labels, v.boxes};
          if (split != "test") settle_no_finding(e.labels);
          entries_.push_back(std::move(e));
        }
        continue;
      }
      Entry e{id, 0, {}, {}};
      for (size_t i = 0; i + 1 < kNumLabels; ++i) {
        size_t votes = 0;
        for (const auto& [reader, v] : views) votes += v.labels[i] > 0;
        e.labels[i] = vote == "any" ? float(votes > 0) : float(2 * votes > views.size());
      }
      settle_no_finding(e.labels);
      for (const auto& [reader, v] : views) e.boxes.insert(e.boxes.end(), v.boxes.begin(), v.boxes.end());
      if (readers == "fused") e.boxes = fuse_boxes(e.boxes, fuse_iou);
      entries_.push_back(std::move(e));
    }
    if (entries_.empty()) fail("{}: no {} images", labels_csv.string(), split);
  }

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }

  std::vector<std::string> label_names() const override {
    std::vector<std::string> names(kLocalLabels.begin(), kLocalLabels.end());
    names.insert(names.end(), kGlobalLabels.begin(), kGlobalLabels.end());
    return names;
  }

  Sample get(int64_t index, uint64_t) const override {
    const Entry& e = entries_.at(static_cast<size_t>(index));
    const fs::path file = files_dir_ / (e.image_id + "." + format_);
    torch::Tensor image;
    float gain = 1, offset = 0;    // the intensity mapping, applied after the resize
    float grid_w = 0, grid_h = 0;  // the DICOM grid the boxes are in
    if (format_ == "dicom") {
      image::DicomReadOptions options;
      options.apply_window = intensity_ == "window";
      const image::DicomFrame frame = image::read_dicom(file, options);
      if (frame.pixels.size(0) != 1) fail("{}: expected a monochrome radiograph, got {} channels", file.string(), frame.pixels.size(0));
      image = frame.pixels;
      // The intensity mapping is affine (x * gain + offset): it commutes with the resize below (an
      // average with weights summing to one), so it is applied after it, to a quarter of the pixels
      // when 1024 goes to 512. The range comes from the full-resolution pixels, as the reference's.
      if (frame.windowed) {
        gain = 255;
      } else if (intensity_ != "raw") {
        float lo = 0, hi = 0;
        if (frame.range) {  // found while the reader converted the pixels
          std::tie(lo, hi) = *frame.range;
        } else {
          const auto [min, max] = torch::aminmax(image);  // one pass for both
          lo = min.item<float>(), hi = max.item<float>();
        }
        gain = hi > lo ? 255.f / (hi - lo) : 0.f;
        offset = -lo * gain;
      }
      grid_w = static_cast<float>(frame.columns), grid_h = static_cast<float>(frame.rows);
    } else {
      image = image::read_image(file);
      if (image.size(0) > 1) image = image.mean(0, /*keepdim=*/true);  // grey radiographs saved as RGB
      grid_w = static_cast<float>(image.size(2)), grid_h = static_cast<float>(image.size(1));
      if (!original_sizes_.empty()) {
        auto it = original_sizes_.find(e.image_id);
        if (it == original_sizes_.end()) fail("{}: image {} is not in {}", file.string(), e.image_id, sizes_file_);
        grid_h = it->second.first, grid_w = it->second.second;
      }
    }
    int64_t h = image.size(1), w = image.size(2);
    if (image_size_ > 0 && (h != image_size_ || w != image_size_)) {
      const cv::Mat src(static_cast<int>(h), static_cast<int>(w), CV_32F, image.data_ptr<float>());
      torch::Tensor resized = torch::empty({1, image_size_, image_size_});
      cv::Mat dst(static_cast<int>(image_size_), static_cast<int>(image_size_), CV_32F, resized.data_ptr<float>());
      cv::resize(src, dst, dst.size(), 0, 0, image_size_ < std::max(h, w) ? cv::INTER_AREA : cv::INTER_LINEAR);
      image = resized;
      h = w = image_size_;
    }
    if (gain != 1 || offset != 0) {
      // The reader's own tensor, in place and in one pass: mul_(gain) then add_(offset)'s roundings.
      image = image.contiguous();
      float* v = image.data_ptr<float>();
      for (int64_t i = 0, n = image.numel(); i < n; ++i) v[i] = v[i] * gain + offset;
    }
    Sample s;
    s.id = file.string();
    s.fields["image"] = image.contiguous();
    s.fields["labels"] = torch::from_blob(const_cast<float*>(e.labels.data()), {int64_t(kNumLabels)}, torch::kFloat).clone();
    s.fields["label_mask"] = torch::ones({int64_t(kNumLabels)});
    const auto n = static_cast<int64_t>(e.boxes.size());
    torch::Tensor boxes = torch::empty({n, 4}), labels = torch::empty({n}, torch::kInt64), readers = torch::empty({n}, torch::kInt64);
    const float sx = static_cast<float>(w) / grid_w, sy = static_cast<float>(h) / grid_h;
    for (int64_t i = 0; i < n; ++i) {
      const Box& b = e.boxes[static_cast<size_t>(i)];
      boxes[i] = torch::tensor({b.xyxy[0] * sx, b.xyxy[1] * sy, b.xyxy[2] * sx, b.xyxy[3] * sy});
      labels[i] = b.label;
      readers[i] = b.reader;
    }
    s.ragged["boxes"] = boxes;
    s.ragged["box_labels"] = labels;
    s.ragged["box_readers"] = readers;
    return s;
  }

 private:
  void read_original_sizes(const std::string& path) {
    sizes_file_ = path;
    const CsvTable t = CsvTable::read(path);
    const size_t id = t.column("image_id");
    auto h = t.find_column("dim0"), w = t.find_column("dim1");
    if (!h || !w) h = t.column("height"), w = t.column("width");
    for (size_t r = 0; r < t.rows(); ++r) {
      const double rows = t.number(r, *h), cols = t.number(r, *w);
      if (!(rows > 0 && cols > 0)) fail("{}: image size {}x{} is not positive", t.where(r), rows, cols);
      original_sizes_[t.cell(r, id)] = {static_cast<float>(rows), static_cast<float>(cols)};
    }
  }

  fs::path root_, files_dir_;
  std::string format_, intensity_;
  int64_t image_size_;
  std::string sizes_file_;
  std::map<std::string, std::pair<float, float>> original_sizes_;  // id -> (rows, columns)
  std::vector<Entry> entries_;
};

FACET_REGISTER(dataset_registry(), "vindr_cxr",
               "VinDr-CXR radiographs (DICOM or preprocessed PNG/JPEG), 28 labels, finding boxes, reader policies",
               [](const Config& c, const std::string& split) { return std::make_shared<VinDrCxr>(c, split); });

}  // namespace
}  // namespace facet::data::vindr_cxr
