// Metric `froc` (froc.h): sensitivity at 0.5, 1, 2, 4, 8, 16 false positives per image and their
// mean, the same per slice-thickness group (<= 2 mm, 5 mm: SATr's split) and per lesion type (the
// type's lesions at the overall FP rate), and COCO-style AP50. Per-image records (truth and
// detections) are gathered over ranks, since none of these are sums.
//
//   metrics: [{name: froc, fps: [0.5, 1, 2, 4, 8, 16], iou: 0.5, plus_one: true,
//              boxes: boxes, scores: scores, truth: boxes, types: box_types, spacing: spacing,
//              type_names: [bone, abdomen, mediastinum, liver, lung, kidney, soft tissue, pelvis]}]
#include "metrics/froc.h"

#include "metrics/metric.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

namespace facet::metrics {

namespace {

double iou(const std::array<double, 4>& a, const std::array<double, 4>& b, double one) {
  const double iw = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]) + one, 0.0);
  const double ih = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]) + one, 0.0);
  const double inter = iw * ih;
  const double uni = (a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

struct Ranked {
  double score;
  size_t image, det;
};

// Every detection of every image, by decreasing score (ties in image order).
std::vector<Ranked> ranked(const std::vector<DetectionRecord>& images) {
  std::vector<Ranked> all;
  for (size_t i = 0; i < images.size(); ++i)
    for (size_t j = 0; j < images[i].det.size(); ++j) all.push_back({images[i].scores[j], i, j});
  std::stable_sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) { return a.score > b.score; });
  return all;
}

bool counts(const DetectionRecord& r, size_t g, int64_t type) {
  return type < 0 || (g < r.gt_types.size() && r.gt_types[g] == type);
}

}  // namespace

FrocCurve froc_curve(const std::vector<DetectionRecord>& images, double iou_threshold, bool plus_one, int64_t type) {
  const double one = plus_one ? 1.0 : 0.0;
  FrocCurve curve;
  curve.images = static_cast<int64_t>(images.size());
  std::vector<std::vector<bool>> hit(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    hit[i].assign(images[i].gt.size(), false);
    for (size_t g = 0; g < images[i].gt.size(); ++g) curve.lesions += counts(images[i], g, type) ? 1 : 0;
  }
  int64_t hits = 0, misses = 0;
  const double lesions = static_cast<double>(std::max<int64_t>(curve.lesions, 1));
  const double n_images = static_cast<double>(std::max<int64_t>(curve.images, 1));
  for (const Ranked& d : ranked(images)) {
    const DetectionRecord& r = images[d.image];
    std::vector<double> overlaps(r.gt.size());
    double best = -1;
    for (size_t g = 0; g < r.gt.size(); ++g) best = std::max(best, overlaps[g] = iou(r.det[d.det], r.gt[g], one));
    if (best < iou_threshold) {
      ++misses;
    } else {
      for (size_t g = 0; g < r.gt.size(); ++g)
        if (overlaps[g] >= iou_threshold && !hit[d.image][g]) {
          hit[d.image][g] = true;
          hits += counts(r, g, type) ? 1 : 0;
        }
    }
    curve.sensitivity.push_back(static_cast<double>(hits) / lesions);
    curve.fp_per_image.push_back(static_cast<double>(misses) / n_images);
  }
  return curve;
}

std::vector<double> sensitivity_at(const FrocCurve& curve, const std::vector<double>& fps) {
  const auto& x = curve.fp_per_image;
  const auto& y = curve.sensitivity;
  std::vector<double> out;
  for (double f : fps) {
    if (x.empty()) {
      out.push_back(0.0);
    } else if (f > x.back()) {
      out.push_back(y.back());  // past the curve: its last sensitivity (3DCE / MULAN)
    } else if (f < x.front()) {
      out.push_back(0.0);  // before the first detection's FP rate (the reference has no value there)
    } else {
      // scipy's interp1d (linear, 1-D: np.interp): from the last point at or left of f towards the
      // next one. At an FP rate the curve reaches, the sensitivity when it leaves that rate.
      const auto j = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), f) - x.begin()) - 1;
      out.push_back(j + 1 >= x.size() ? y.back() : y[j] + (y[j + 1] - y[j]) * (f - x[j]) / (x[j + 1] - x[j]));
    }
  }
  return out;
}

double average_precision(const std::vector<DetectionRecord>& images, double iou_threshold) {
  int64_t lesions = 0;
  std::vector<std::vector<bool>> taken(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    lesions += static_cast<int64_t>(images[i].gt.size());
    taken[i].assign(images[i].gt.size(), false);
  }
  if (lesions == 0) return 0.0;
  std::vector<double> precision, recall;
  int64_t tp = 0, fp = 0;
  for (const Ranked& d : ranked(images)) {
    const DetectionRecord& r = images[d.image];
    double best = iou_threshold;
    int64_t match = -1;
    for (size_t g = 0; g < r.gt.size(); ++g) {
      if (taken[d.image][g]) continue;
      const double o = iou(r.det[d.det], r.gt[g], 0.0);
      if (o >= best) {
        best = o;
        match = static_cast<int64_t>(g);
      }
    }
    if (match >= 0) {
      taken[d.image][static_cast<size_t>(match)] = true;
      ++tp;
    } else {
      ++fp;
    }
    precision.push_back(static_cast<double>(tp) / static_cast<double>(tp + fp));
    recall.push_back(static_cast<double>(tp) / static_cast<double>(lesions));
  }
  // Precision made monotone from the right, read at recall 0, 0.01, ..., 1 (pycocotools).
  for (size_t i = precision.size(); i-- > 1;) precision[i - 1] = std::max(precision[i - 1], precision[i]);
  double sum = 0;
  for (int k = 0; k <= 100; ++k) {
    const double r = k / 100.0;
    const auto it = std::lower_bound(recall.begin(), recall.end(), r);
    if (it != recall.end()) sum += precision[static_cast<size_t>(it - recall.begin())];
  }
  return sum / 101.0;
}

namespace {

std::string fp_name(double f) { return fmt::format("sens@{:g}", f); }

class Froc : public Metric {
 public:
  explicit Froc(const Config& c)
      : fps_(c.get<std::vector<double>>("fps", {0.5, 1, 2, 4, 8, 16})),
        iou_(c.get_in_range<double>("iou", 0.5, Range::closed(0, 1))),
        plus_one_(c.get<bool>("plus_one", true)),
        boxes_(c.get<std::string>("boxes", "boxes")),
        scores_(c.get<std::string>("scores", "scores")),
        truth_(c.get<std::string>("truth", "boxes")),
        types_(c.get<std::string>("types", "box_types")),
        spacing_(c.get<std::string>("spacing", "spacing")),
        type_names_(c.get<std::vector<std::string>>(
            "type_names", {"bone", "abdomen", "mediastinum", "liver", "lung", "kidney", "soft_tissue", "pelvis"})) {
    if (fps_.empty()) fail("{}: {}: at least one FP rate", c.where("fps"), c.full_key("fps"));
    for (double f : fps_)
      if (!(f > 0)) fail("{}: {}: FP rates must be positive, got {}", c.where("fps"), c.full_key("fps"), f);
  }

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const auto find = [](const auto& ragged, const std::string& key, const char* what) -> const std::vector<torch::Tensor>& {
      const auto it = ragged.find(key);
      if (it == ragged.end()) fail("froc: the {} have no ragged field \"{}\"", what, key);
      return it->second;
    };
    const auto& det = find(outputs.ragged, boxes_, "outputs");
    const auto& scores = find(outputs.ragged, scores_, "outputs");
    const auto& truth = find(batch.ragged, truth_, "batch's fields");
    const auto types = batch.ragged.find(types_);
    torch::Tensor spacing;
    if (batch.fields.contains(spacing_)) spacing = batch.fields.at(spacing_).to(torch::kCPU, torch::kDouble);
    const int64_t b = batch.size();
    if (static_cast<int64_t>(det.size()) != b || static_cast<int64_t>(truth.size()) != b)
      fail("froc: {} images, {} detection lists, {} truth lists", b, det.size(), truth.size());
    const auto index = batch.indices.to(torch::kCPU);
    for (int64_t i = 0; i < b; ++i) {
      DetectionRecord r;
      const auto t = truth[static_cast<size_t>(i)].to(torch::kCPU, torch::kDouble).reshape({-1, 4}).contiguous();
      for (int64_t g = 0; g < t.size(0); ++g) r.gt.push_back(row(t, g));
      if (types != batch.ragged.end()) {
        const auto ty = types->second[static_cast<size_t>(i)].to(torch::kCPU, torch::kLong).reshape({-1});
        for (int64_t g = 0; g < ty.size(0); ++g) r.gt_types.push_back(ty[g].item<int64_t>());
      }
      const auto d = det[static_cast<size_t>(i)].detach().to(torch::kCPU, torch::kDouble).reshape({-1, 4}).contiguous();
      const auto s = scores[static_cast<size_t>(i)].detach().to(torch::kCPU, torch::kDouble).reshape({-1});
      if (s.size(0) != d.size(0)) fail("froc: image {}: {} boxes, {} scores", i, d.size(0), s.size(0));
      for (int64_t k = 0; k < d.size(0); ++k) {
        r.det.push_back(row(d, k));
        r.scores.push_back(s[k].item<double>());
      }
      if (spacing.defined()) r.thickness = spacing[i].reshape({-1}).index({-1}).item<double>();
      records_[index[i].item<int64_t>()] = std::move(r);
    }
  }

  std::map<std::string, double> compute() const override {
    std::vector<DetectionRecord> all;
    std::vector<DetectionRecord> thin, thick;
    for (const auto& [i, r] : records_) {
      all.push_back(r);
      if (r.thickness <= 2.0) thin.push_back(r);
      if (std::abs(r.thickness - 5.0) < 1e-3) thick.push_back(r);
    }
    std::map<std::string, double> out;
    add(out, "froc/", froc_curve(all, iou_, plus_one_), true);
    if (!thin.empty()) add(out, "froc/thick<=2mm/", froc_curve(thin, iou_, plus_one_), true);
    if (!thick.empty()) add(out, "froc/thick=5mm/", froc_curve(thick, iou_, plus_one_), true);
    std::set<int64_t> types;
    for (const auto& r : all)
      for (auto t : r.gt_types)
        if (t >= 0) types.insert(t);
    for (auto t : types) {
      const std::string name = t >= 1 && t <= static_cast<int64_t>(type_names_.size()) ? type_names_[static_cast<size_t>(t - 1)]
                                                                                      : fmt::format("type{}", t);
      add(out, "froc/" + name + "/", froc_curve(all, iou_, plus_one_, t), false);
    }
    out["froc/ap50"] = average_precision(all, 0.5);
    return out;
  }

  void reset() override { records_.clear(); }
  torch::Tensor state() const override { return torch::zeros({0}, torch::kDouble); }
  void load_state(const torch::Tensor&) override {}

  // One line per image: index, thickness, #truth, #detections, then x1 y1 x2 y2 type per lesion and
  // x1 y1 x2 y2 score per detection.
  std::string records() const override {
    std::ostringstream o;
    o.precision(17);
    for (const auto& [i, r] : records_) {
      o << i << ' ' << r.thickness << ' ' << r.gt.size() << ' ' << r.det.size();
      for (size_t g = 0; g < r.gt.size(); ++g)
        o << ' ' << r.gt[g][0] << ' ' << r.gt[g][1] << ' ' << r.gt[g][2] << ' ' << r.gt[g][3] << ' '
          << (g < r.gt_types.size() ? r.gt_types[g] : -1);
      for (size_t k = 0; k < r.det.size(); ++k)
        o << ' ' << r.det[k][0] << ' ' << r.det[k][1] << ' ' << r.det[k][2] << ' ' << r.det[k][3] << ' ' << r.scores[k];
      o << '\n';
    }
    return o.str();
  }

  void merge_records(const std::vector<std::string>& per_rank) override {
    records_.clear();
    for (const auto& text : per_rank) {
      std::istringstream lines(text);
      std::string line;
      while (std::getline(lines, line)) {
        std::istringstream in(line);
        int64_t i = 0;
        std::string thickness;
        size_t ng = 0, nd = 0;
        if (!(in >> i >> thickness >> ng >> nd)) fail("froc: bad record line \"{}\"", line);
        DetectionRecord r;
        r.thickness = thickness == "nan" || thickness == "-nan" ? std::numeric_limits<double>::quiet_NaN() : std::stod(thickness);
        for (size_t g = 0; g < ng; ++g) {
          std::array<double, 4> b{};
          int64_t t = -1;
          in >> b[0] >> b[1] >> b[2] >> b[3] >> t;
          r.gt.push_back(b);
          r.gt_types.push_back(t);
        }
        for (size_t k = 0; k < nd; ++k) {
          std::array<double, 4> b{};
          double s = 0;
          in >> b[0] >> b[1] >> b[2] >> b[3] >> s;
          r.det.push_back(b);
          r.scores.push_back(s);
        }
        if (!in) fail("froc: truncated record line for image {}", i);
        records_[i] = std::move(r);
      }
    }
  }

 private:
  static std::array<double, 4> row(const torch::Tensor& t, int64_t i) {
    const double* p = t[i].data_ptr<double>();
    return {p[0], p[1], p[2], p[3]};
  }

  void add(std::map<std::string, double>& out, const std::string& prefix, const FrocCurve& curve, bool every_level) const {
    const auto sens = sensitivity_at(curve, fps_);
    for (size_t k = 0; k < fps_.size(); ++k)
      if (every_level || fps_[k] == 4.0) out[prefix + fp_name(fps_[k])] = sens[k];
    out[prefix + "mean"] = std::accumulate(sens.begin(), sens.end(), 0.0) / static_cast<double>(sens.size());
  }

  std::vector<double> fps_;
  double iou_;
  bool plus_one_;
  std::string boxes_, scores_, truth_, types_, spacing_;
  std::vector<std::string> type_names_;
  std::map<int64_t, DetectionRecord> records_;
};

FACET_REGISTER(metric_registry(), "froc",
               "DeepLesion FROC: sensitivity at 0.5..16 FPs/image (IoU >= 0.5, reference counting), mean, per "
               "thickness and lesion type; AP50 (fps, iou, plus_one, boxes, scores, truth, types, spacing)",
               [](const Config& c) { return std::make_shared<Froc>(c); });

}  // namespace
}  // namespace facet::metrics
