// The DeepLesion reader ("deeplesion"): key slices with their neighbours as a multi-slice CT input,
// lesion boxes, the official patient-level split, the noisy flag, the coarse lesion types, RECIST
// marks, slice interval and pixel spacing, and optionally GrabCut pseudo-masks. Neighbour slices
// follow 3DCE's `load_ct_img` (medical.md §B.5), including its interpolation weights, so inputs match
// the published detectors'.
//
//   data:
//     name: deeplesion
//     root: /data/DeepLesion
//     num_slices: 3            # odd: the key slice and (n - 1) / 2 neighbours each side
//     slice_interval_mm: 2.0   # neighbours are this far apart after resampling (3DCE: 2 mm)
//     slice_interpolation: reference  # reference: 3DCE's weights, computed once from the first
//                              # neighbour's offset and reused for the further ones (the published
//                              # inputs); exact: linear interpolation at every offset
//     norm_spacing_mm: 0       # > 0: resample in-plane to this pixel size (3DCE/MULAN: 0.8) ...
//     image_size: 0            # ... capped so the longer side is at most image_size (3DCE's MAX_SIZE:
//                              # never scaled past it); without norm_spacing_mm, > 0 resizes the longer
//                              # side to image_size (mmdet's keep-ratio Resize of A3D/SATr)
//     masks: none              # grabcut: per-lesion pseudo-masks from the RECIST marks (box_masks),
//                              # as the SATr/A3D mask generator makes them
//     include_noisy: false     # the 35 lesions flagged Possibly_noisy (A3D/SATr drop them)
//
// A sample: fields image [S, H, W] (HU), spacing [3] (x, y mm per pixel after resizing, z = slice
// interval), thickness [] (the slice interval in mm, for the <= 2 mm / 5 mm evaluation split); ragged
// boxes [N, 4], box_labels (1), box_types (Coarse_lesion_type, -1 untyped), box_noisy, box_recist
// [N, 4, 2] (long-axis then short-axis endpoints, continuous pixels: the CSV's 1-based pixel x is at
// x - 0.5), box_masks [N, H, W] float 0/1 with masks: grabcut.
#include "core/csv.h"
#include "data/dataset.h"
#include "data/deeplesion/deeplesion.h"
#include "data/image/image_io.h"
#include "data/image/png.h"
#include "data/image_list/image_list.h"
#include "data/pooled_memory.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

namespace facet::data::deeplesion {
namespace {

namespace fs = std::filesystem;

struct Lesion {
  std::array<float, 4> box;  // continuous pixels: [x1 − 1, y1 − 1, x2, y2] of the 1-based inclusive CSV box
  std::array<float, 8> recist;  // the CSV's 1-based pixel coordinates: x11, y11, x12, y12, x21, y21, x22, y22
  int64_t type = -1;
  bool noisy = false;
};

struct KeySlice {
  std::string file_name;  // as in the CSV, e.g. 000001_01_01_109.png
  fs::path series_dir;    // Images_png/000001_01_01
  int64_t key = 0;        // 1-based slice index
  int64_t first = 0, last = 0;  // Slice_range
  std::array<double, 3> spacing{};  // x, y, z (mm)
  std::string where;      // DL_info.csv:line of its first lesion
  std::vector<Lesion> lesions;
};

// How a key slice becomes the network's input, shared by the dataset and `facet predict`.
struct StackOptions {
  int64_t num_slices = 3;
  double interval = 2.0, norm_spacing = 0.0;
  int64_t image_size = 0;
  bool exact_interpolation = false;

  static StackOptions from(const Config& c) {
    StackOptions o;
    o.num_slices = c.get<int64_t>("num_slices", 3);
    o.interval = c.get<double>("slice_interval_mm", 2.0);
    o.norm_spacing = c.get<double>("norm_spacing_mm", 0.0);
    o.image_size = c.get<int64_t>("image_size", 0);
    const auto interpolation = c.get<std::string>("slice_interpolation", "reference");
    if (interpolation != "reference" && interpolation != "exact")
      fail("{}: {}: expected reference or exact, got \"{}\"", c.where("slice_interpolation"), c.full_key("slice_interpolation"), interpolation);
    o.exact_interpolation = interpolation == "exact";
    if (o.num_slices < 1 || o.num_slices % 2 == 0)
      fail("{}: {}.num_slices: expected an odd positive number, got {}", c.where("num_slices"), c.prefix(), o.num_slices);
    return o;
  }

  // 3DCE's load_prep_img: the spacing normalisation, then the cap on the longer side (the scale is
  // reduced so that side is image_size, never enlarged past it); mmdet's keep-ratio Resize without it.
  double resize_scale(double pixel_mm, int h, int w) const {
    const double longer = std::max(h, w);
    if (norm_spacing > 0) {
      double scale = pixel_mm > 0 ? pixel_mm / norm_spacing : 1.0;
      if (image_size > 0 && longer * scale > static_cast<double>(image_size)) scale = static_cast<double>(image_size) / longer;
      return scale;
    }
    return image_size > 0 ? static_cast<double>(image_size) / longer : 1.0;
  }
};

// A slice's stored 16-bit values (HU + 32768), as decoded: the stack is made from them in one pass.
cv::Mat read_png16(const fs::path& path) {
  const std::string file = image::read_image_file(path, "slice");  // read once, checked and decoded
  if (!image::is_png(file)) fail("{}: cannot decode the PNG (no PNG signature)", path.string());
  // Our libdeflate PNG decoder (image/png.h): its inflate is most of a DeepLesion loader's time.
  cv::Mat raw = image::decode_image_mat(path, file);
  if (raw.type() != CV_16UC1)
    fail("{}: expected a single-channel 16-bit PNG (DeepLesion stores HU + 32768), got {} channel(s) of depth {}",
         path.string(), raw.channels(), raw.depth() == CV_8U ? "8 bits" : "other");
  return raw;
}

// The file of one slice (1-based index) of a series: a missing neighbour steps back toward the key
// slice until a file exists (3DCE), so the key slice itself must exist.
fs::path series_slice_path(const fs::path& series_dir, int64_t key, int64_t index) {
  const int64_t step = index > key ? -1 : 1;
  for (int64_t i = index;; i += step) {
    fs::path path = series_dir / fmt::format("{:03d}.png", i);
    if (i == key || fs::exists(path)) return path;
  }
}

// One plane of the stack: a decoded slice, or 3DCE's blend of two, a * first + b * second.
struct Plane {
  explicit Plane(cv::Mat slice) : first(std::move(slice)) {}
  Plane(cv::Mat first_, cv::Mat second_, double a_, double b_)
      : first(std::move(first_)), second(std::move(second_)), a(static_cast<float>(a_)), b(static_cast<float>(b_)) {}
  cv::Mat first, second;  // stored 16-bit values; `second` empty for a plain slice
  float a = 1, b = 0;
};

// [furthest previous ... key ... furthest next] around slice `key`, `z_mm` apart in the file,
// medical.md §B.5. Each file is decoded once however many planes weigh it (3DCE's loader caches
// them the same way; the 7-slice stack of a 5 mm series reads 5 files, not 13).
std::vector<Plane> load_volume(const StackOptions& o, const fs::path& series_dir, int64_t key, double z_mm) {
  std::map<fs::path, cv::Mat> decoded;
  auto slice = [&](int64_t index) -> const cv::Mat& {
    const fs::path path = series_slice_path(series_dir, key, index);
    auto it = decoded.find(path);
    if (it == decoded.end()) it = decoded.emplace(path, read_png16(path)).first;
    return it->second;
  };
  const cv::Mat key_plane = slice(key);
  std::vector<Plane> planes(static_cast<size_t>(o.num_slices), Plane(key_plane));
  const int64_t half = (o.num_slices - 1) / 2;
  if (half == 0 || !(z_mm > 0) || !(o.interval > 0)) return planes;
  auto at = [&](int64_t i) -> const cv::Mat& {
    const cv::Mat& m = slice(i);
    if (m.size() != key_plane.size())
      fail("{}: slice {} is {}x{}, the key slice {}x{}", series_dir.string(), i, m.rows, m.cols, key_plane.rows, key_plane.cols);
    return m;
  };
  const double rel = o.interval / z_mm;
  for (int64_t p = 1; p <= half; ++p) {
    const double d = rel * static_cast<double>(p);
    // reference: the weights of the first offset reused for every further one (3DCE's quirk);
    // exact: the linear-interpolation weights of this offset.
    const double w = o.exact_interpolation ? d : rel;
    const double a = w - std::floor(w), b = o.exact_interpolation ? 1.0 - a : std::ceil(w) - w;
    const auto lo = static_cast<int64_t>(std::floor(d)), hi = static_cast<int64_t>(std::ceil(d));
    Plane& prev = planes[static_cast<size_t>(half - p)];
    Plane& next = planes[static_cast<size_t>(half + p)];
    if (a == 0 || lo == hi) {  // an integer offset: plain neighbours
      prev = Plane(at(key - lo));
      next = Plane(at(key + lo));
    } else {
      prev = Plane(at(key - hi), at(key - lo), a, b);
      next = Plane(at(key + hi), at(key + lo), a, b);
    }
  }
  return planes;
}

// A plane in Hounsfield units, written to `out` (rows x cols floats) in one pass over its slices:
// 3DCE's order, each slice minus 32768 in float, then a * first + b * second.
void plane_in_hu(const Plane& p, float* out) {
  const int rows = p.first.rows, cols = p.first.cols;
  const float offset = static_cast<float>(kHuOffset);
  for (int y = 0; y < rows; ++y) {
    const uint16_t* first = p.first.ptr<uint16_t>(y);
    float* dst = out + static_cast<int64_t>(y) * cols;
    if (p.second.empty()) {
      for (int x = 0; x < cols; ++x) dst[x] = static_cast<float>(first[x]) - offset;
    } else {
      const uint16_t* second = p.second.ptr<uint16_t>(y);
      for (int x = 0; x < cols; ++x)
        dst[x] = p.a * (static_cast<float>(first[x]) - offset) + p.b * (static_cast<float>(second[x]) - offset);
    }
  }
}

// The planes in Hounsfield units, resized to out_h x out_w (bilinear, as 3DCE and mmdet), stacked.
torch::Tensor stack_planes(const std::vector<Plane>& planes, int out_h, int out_w) {
  torch::Tensor image = pooled_empty({static_cast<int64_t>(planes.size()), out_h, out_w}, torch::kFloat);
  cv::Mat hu;  // a plane at the slices' size, when it is resized
  for (size_t i = 0; i < planes.size(); ++i) {
    float* dst = image[static_cast<int64_t>(i)].data_ptr<float>();
    const cv::Mat& first = planes[i].first;
    if (first.rows == out_h && first.cols == out_w) {
      plane_in_hu(planes[i], dst);
    } else {
      hu.create(first.rows, first.cols, CV_32F);
      plane_in_hu(planes[i], hu.ptr<float>());
      cv::Mat resized(out_h, out_w, CV_32F, dst);
      cv::resize(hu, resized, resized.size(), 0, 0, cv::INTER_LINEAR);
    }
  }
  return image;
}

class DeepLesion : public Dataset {
 public:
  DeepLesion(const Config& c, const std::string& split)
      : root_(c.get<std::string>("root")), stack_(StackOptions::from(c)) {
    const auto masks = c.get<std::string>("masks", "none");
    if (masks != "none" && masks != "grabcut")
      fail("{}: {}: expected none or grabcut, got \"{}\"", c.where("masks"), c.full_key("masks"), masks);
    grabcut_ = masks == "grabcut";
    const bool include_noisy = c.get<bool>("include_noisy", false);
    static const std::map<std::string, int64_t> codes = {{"train", 1}, {"val", 2}, {"test", 3}};
    auto code = codes.find(split);
    if (code == codes.end()) fail("{}: deeplesion has the splits train, val and test, not \"{}\"", c.where(), split);
    const fs::path csv_path = root_ / "DL_info.csv";
    if (!fs::exists(csv_path)) fail("{}: {}.root: {} does not exist", c.where("root"), c.prefix(), csv_path.string());
    const CsvTable t = CsvTable::read(csv_path);
    std::array<size_t, kColumns.size()> col{};
    for (size_t i = 0; i < kColumns.size(); ++i) col[i] = t.column(kColumns[i]);
    enum { kFile = 0, kKey = 4, kRecist = 5, kBox = 6, kType = 9, kNoisy = 10, kRange = 11, kSpacing = 12, kSplit = 17 };
    std::map<std::string, size_t> index;
    for (size_t r = 0; r < t.rows(); ++r) {
      if (t.integer(r, col[kSplit]) != code->second) continue;
      Lesion lesion;
      const auto b = t.numbers(r, col[kBox], 4);
      lesion.box = {static_cast<float>(b[0] - 1), static_cast<float>(b[1] - 1), static_cast<float>(b[2]),
                    static_cast<float>(b[3])};
      if (!(b[2] >= b[0] && b[3] >= b[1])) fail("{}: Bounding_boxes: x2 < x1 or y2 < y1 in \"{}\"", t.where(r), t.cell(r, col[kBox]));
      const auto recist = t.numbers(r, col[kRecist], 8);
      for (size_t i = 0; i < 8; ++i) lesion.recist[i] = static_cast<float>(recist[i]);
      lesion.type = t.integer(r, col[kType]);
      lesion.noisy = t.integer(r, col[kNoisy]) != 0;
      if (lesion.noisy && !include_noisy) continue;
      const std::string& name = t.cell(r, col[kFile]);
      auto [it, added] = index.emplace(name, slices_.size());
      if (added) {
        KeySlice k;
        k.file_name = name;
        const size_t cut = name.rfind('_');
        if (cut == std::string::npos || name.size() < 5 || name.substr(name.size() - 4) != ".png")
          fail("{}: File_name: expected <patient>_<study>_<series>_<slice>.png, got \"{}\"", t.where(r), name);
        k.series_dir = root_ / "Images_png" / name.substr(0, cut);
        k.key = t.integer(r, col[kKey]);
        const auto range = t.numbers(r, col[kRange], 2);
        k.first = static_cast<int64_t>(range[0]);
        k.last = static_cast<int64_t>(range[1]);
        const auto spacing = t.numbers(r, col[kSpacing], 3);
        k.spacing = {spacing[0], spacing[1], spacing[2]};
        if (!(k.first <= k.key && k.key <= k.last))
          fail("{}: Key_slice_index {} is outside Slice_range {}..{}", t.where(r), k.key, k.first, k.last);
        k.where = t.where(r);
        slices_.push_back(std::move(k));
      }
      slices_[it->second].lesions.push_back(lesion);
    }
    if (slices_.empty()) fail("{}: no {} lesions (Train_Val_Test = {})", csv_path.string(), split, code->second);
  }

  int64_t size() const override { return static_cast<int64_t>(slices_.size()); }
  std::vector<std::string> label_names() const override { return {"background", "lesion"}; }

  Sample get(int64_t index, uint64_t) const override {
    const KeySlice& k = slices_.at(static_cast<size_t>(index));
    const std::vector<Plane> planes = load_volume(stack_, k.series_dir, k.key, k.spacing[2]);
    Sample s;
    s.id = (k.series_dir / fmt::format("{:03d}.png", k.key)).string();
    const int h = planes[0].first.rows, w = planes[0].first.cols;
    const double scale = stack_.resize_scale(k.spacing[0], h, w);
    const int out_h = static_cast<int>(std::lround(h * scale)), out_w = static_cast<int>(std::lround(w * scale));
    const bool resized = out_h != h || out_w != w;
    s.fields["image"] = stack_planes(planes, out_h, out_w);
    // Continuous coordinates scale per axis by the output / input size.
    const float sx = static_cast<float>(out_w) / static_cast<float>(w), sy = static_cast<float>(out_h) / static_cast<float>(h);
    const auto n = static_cast<int64_t>(k.lesions.size());
    torch::Tensor boxes = torch::empty({n, 4}), types = torch::empty({n}, torch::kInt64), noisy = torch::empty({n}, torch::kBool);
    torch::Tensor recist = torch::empty({n, 4, 2});
    for (int64_t i = 0; i < n; ++i) {
      const Lesion& l = k.lesions[static_cast<size_t>(i)];
      boxes[i] = torch::tensor({l.box[0] * sx, l.box[1] * sy, l.box[2] * sx, l.box[3] * sy});
      for (int64_t p = 0; p < 4; ++p) {
        recist[i][p][0] = (l.recist[static_cast<size_t>(2 * p)] - 0.5f) * sx;
        recist[i][p][1] = (l.recist[static_cast<size_t>(2 * p + 1)] - 0.5f) * sy;
      }
      types[i] = l.type;
      noisy[i] = l.noisy;
    }
    s.ragged["boxes"] = boxes;
    s.ragged["box_labels"] = torch::ones({n}, torch::kInt64);  // universal lesion detection: one class
    s.ragged["box_types"] = types;  // Coarse_lesion_type, -1 untyped
    s.ragged["box_noisy"] = noisy;  // Possibly_noisy
    s.ragged["box_recist"] = recist;
    if (grabcut_) {
      cv::Mat key;  // the key slice's stored values, as float
      planes[static_cast<size_t>((stack_.num_slices - 1) / 2)].first.convertTo(key, CV_32F);
      torch::Tensor masks = torch::empty({n, out_h, out_w}, torch::kFloat);
      for (int64_t i = 0; i < n; ++i) {
        const Lesion& l = k.lesions[static_cast<size_t>(i)];
        // Back to the CSV's values minus 1: the box is stored as continuous [x1 - 1, y1 - 1, x2, y2].
        const std::array<double, 4> box = {l.box[0], l.box[1], l.box[2] - 1.0, l.box[3] - 1.0};
        std::array<double, 8> marks{};
        for (size_t j = 0; j < 8; ++j) marks[j] = l.recist[j] - 1.0;
        const cv::Mat m = grabcut_mask(key, box, marks);
        cv::Mat dst(out_h, out_w, CV_32F, masks[i].data_ptr<float>());
        cv::Mat mf;
        m.convertTo(mf, CV_32F);
        if (!resized) mf.copyTo(dst);
        else cv::resize(mf, dst, dst.size(), 0, 0, cv::INTER_NEAREST);
      }
      s.ragged["box_masks"] = masks;
    }
    s.fields["spacing"] = torch::tensor({k.spacing[0] / sx, k.spacing[1] / sy, k.spacing[2]}, torch::kFloat);
    s.fields["thickness"] = torch::tensor(static_cast<float>(k.spacing[2]));
    return s;
  }

 private:
  fs::path root_;
  StackOptions stack_;
  bool grabcut_ = false;
  std::vector<KeySlice> slices_;
};

// `facet predict` on DeepLesion-format files: each input is a key slice Images_png/<series>/<NNN>.png
// (a folder: every slice in it), stacked with its neighbours from the same folder exactly as the
// dataset does. The slice interval and pixel size come from the DL_info.csv of the download the
// series sits in (<root>/Images_png/<series>), else from data.predict_spacing_mm: [x, y, z].
class DeepLesionFiles : public Dataset {
 public:
  DeepLesionFiles(const Config& c, const std::vector<fs::path>& inputs)
      : stack_(StackOptions::from(c)), files_(ImageListDataset(inputs).files()) {
    if (c.has("predict_spacing_mm")) {
      const auto v = c.get<std::vector<double>>("predict_spacing_mm");
      if (v.size() != 3 || !(v[0] > 0 && v[1] > 0 && v[2] > 0))
        fail("{}: {}.predict_spacing_mm: expected [x, y, z] in mm, all > 0", c.where("predict_spacing_mm"), c.prefix());
      fallback_ = {v[0], v[1], v[2]};
    }
    for (const fs::path& f : files_) {
      const std::string stem = f.stem().string();
      if (stem.empty() || stem.find_first_not_of("0123456789") != std::string::npos || f.extension() != ".png")
        fail("{}: expected a DeepLesion slice <NNN>.png inside its series folder (Images_png/<patient>_<study>_<series>/)",
             f.string());
      spacing_.push_back(series_spacing(f));
    }
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }

  Sample get(int64_t index, uint64_t) const override {
    const fs::path& file = files_.at(static_cast<size_t>(index));
    const std::array<double, 3>& spacing = spacing_.at(static_cast<size_t>(index));
    const int64_t key = std::stoll(file.stem().string());
    const std::vector<Plane> planes = load_volume(stack_, file.parent_path(), key, spacing[2]);
    const int h = planes[0].first.rows, w = planes[0].first.cols;
    const double scale = stack_.resize_scale(spacing[0], h, w);
    const int out_h = static_cast<int>(std::lround(h * scale)), out_w = static_cast<int>(std::lround(w * scale));
    Sample s;
    s.id = file.string();
    s.fields["image"] = stack_planes(planes, out_h, out_w);
    s.fields["spacing"] = torch::tensor({spacing[0] * w / out_w, spacing[1] * h / out_h, spacing[2]}, torch::kFloat);
    s.fields["thickness"] = torch::tensor(static_cast<float>(spacing[2]));
    return s;
  }

 private:
  // The series' row in <root>/DL_info.csv when the file sits in <root>/Images_png/<series>/.
  std::array<double, 3> series_spacing(const fs::path& file) {
    const fs::path series = file.parent_path(), csv = series.parent_path().parent_path() / "DL_info.csv";
    if (series.parent_path().filename() == "Images_png" && fs::exists(csv)) {
      auto it = tables_.find(csv);
      if (it == tables_.end()) it = tables_.emplace(csv, read_spacings(csv)).first;
      if (auto row = it->second.find(series.filename().string()); row != it->second.end()) return row->second;
    }
    if (fallback_) return *fallback_;
    const bool needed = stack_.num_slices > 1 || stack_.norm_spacing > 0;
    if (!needed) return {0.0, 0.0, 0.0};
    fail("{}: no DL_info.csv row gives this series' spacing (the file is not in <root>/Images_png/<series>/ of a "
         "download, or its series is not listed); set data.predict_spacing_mm=[x, y, z] (mm per pixel, slice interval)",
         file.string());
  }

  // Series folder name -> Spacing_mm_px_ (x, y, z), from File_name <series>_<NNN>.png.
  static std::map<std::string, std::array<double, 3>> read_spacings(const fs::path& csv_path) {
    const CsvTable t = CsvTable::read(csv_path);
    const size_t file = t.column("File_name"), spacing = t.column("Spacing_mm_px_");
    std::map<std::string, std::array<double, 3>> out;
    for (size_t r = 0; r < t.rows(); ++r) {
      const std::string& name = t.cell(r, file);
      const size_t cut = name.rfind('_');
      if (cut == std::string::npos) fail("{}: File_name: expected <patient>_<study>_<series>_<slice>.png, got \"{}\"", t.where(r), name);
      const auto v = t.numbers(r, spacing, 3);
      out.emplace(name.substr(0, cut), std::array<double, 3>{v[0], v[1], v[2]});
    }
    return out;
  }

  StackOptions stack_;
  std::vector<fs::path> files_;
  std::vector<std::array<double, 3>> spacing_;
  std::optional<std::array<double, 3>> fallback_;
  std::map<fs::path, std::map<std::string, std::array<double, 3>>> tables_;
};

FACET_REGISTER(prediction_input_registry(), "deeplesion",
               "DeepLesion key-slice PNGs in their series folders, stacked with their neighbours",
               [](const Config& c, const std::vector<fs::path>& inputs, int64_t) {
                 return std::make_shared<DeepLesionFiles>(c, inputs);
               });

FACET_REGISTER(dataset_registry(), "deeplesion",
               "DeepLesion key slices + neighbours (HU), lesion boxes, official split (Images_png + DL_info.csv)",
               [](const Config& c, const std::string& split) { return std::make_shared<DeepLesion>(c, split); });

}  // namespace
}  // namespace facet::data::deeplesion
