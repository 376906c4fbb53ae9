// `facet data synth vindr-cxr`: a small VinDr-CXR in the published layout (12-bit DICOM files,
// some MONOCHROME1, the four annotation CSVs with their exact headers) whose findings a model can
// learn: radiograph-like images (body, two dark lung fields, heart, spine, diaphragm, faint ribs)
// with six drawable findings — Nodule/Mass, Lung Opacity, Consolidation, Pleural effusion,
// Cardiomegaly, Aortic enlargement — each boxed where it is drawn. Three of 17 readers annotate a
// train image, each missing a finding now and then and jittering its boxes, as real readers
// disagree; the test split carries the exact consensus.
#include "core/text.h"
#include "data/image/dicom.h"
#include "data/sampler.h"
#include "data/synth.h"
#include "data/vindr_cxr/vindr_cxr.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

namespace facet::data::vindr_cxr {
namespace {

namespace fs = std::filesystem;

struct SynthOptions {
  int64_t train = 48, test = 16, size = 256, bits_stored = 12;
  uint64_t seed = 0;

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.train = c.get<int64_t>("train", o.train);
    o.test = c.get<int64_t>("test", o.test);
    o.size = c.get<int64_t>("size", o.size);
    o.bits_stored = c.get<int64_t>("bits_stored", o.bits_stored);
    o.seed = c.get<uint64_t>("seed", o.seed);
    if (o.train < 1 || o.test < 1) fail("{}: {} and {}: expected at least 1 image each", c.where(), c.full_key("train"), c.full_key("test"));
    if (o.size < 64 || o.size > 4096) fail("{}: {}: expected 64..4096, got {}", c.where("size"), c.full_key("size"), o.size);
    if (o.bits_stored < 10 || o.bits_stored > 16)
      fail("{}: {}: expected 10..16, got {}", c.where("bits_stored"), c.full_key("bits_stored"), o.bits_stored);
    return o;
  }
};

// The drawable findings and the global label each implies.
struct Finding {
  std::string_view name;
  double probability;
  std::string_view implies;  // global label, or empty
};
constexpr std::array<Finding, 6> kFindings = {{{"Nodule/Mass", 0.25, "Lung tumor"},
                                               {"Lung Opacity", 0.25, ""},
                                               {"Consolidation", 0.2, "Pneumonia"},
                                               {"Pleural effusion", 0.2, "Other diseases"},
                                               {"Cardiomegaly", 0.2, ""},
                                               {"Aortic enlargement", 0.15, ""}}};

struct Drawn {
  size_t finding;                // index into kFindings
  std::array<double, 4> box;     // pixels
};

class Painter {
 public:
  Painter(int64_t n, at::Generator& g) : n_(n), g_(g) {
    const auto axis = (torch::arange(n, torch::kDouble) + 0.5) / static_cast<double>(n);
    yy_ = axis.view({-1, 1}).expand({n, n});
    xx_ = axis.view({1, -1}).expand({n, n});
  }
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * torch::rand({1}, g_, torch::TensorOptions().dtype(torch::kDouble)).item<double>();
  }
  torch::Tensor ellipse(double cx, double cy, double rx, double ry) const {
    return ((xx_ - cx) / rx).pow(2) + ((yy_ - cy) / ry).pow(2) <= 1;
  }
  torch::Tensor gaussian(double cx, double cy, double sigma) const {
    return (-(((xx_ - cx).pow(2) + (yy_ - cy).pow(2)) / (2 * sigma * sigma))).exp();
  }
  std::array<double, 4> box(double cx, double cy, double rx, double ry) const {
    const double s = static_cast<double>(n_);
    return {std::max(0.0, (cx - rx) * s), std::max(0.0, (cy - ry) * s), std::min(s, (cx + rx) * s), std::min(s, (cy + ry) * s)};
  }
  const torch::Tensor& xx() const { return xx_; }
  const torch::Tensor& yy() const { return yy_; }
  at::Generator& generator() { return g_; }

 private:
  int64_t n_;
  at::Generator& g_;
  torch::Tensor xx_, yy_;
};

// One radiograph as density in 0..1 (1 = dense) and the findings drawn into it.
std::pair<torch::Tensor, std::vector<Drawn>> draw_radiograph(Painter& p, int64_t n) {
  const double side = p.uniform(-0.02, 0.02);  // patient position
  const double lung_rx = p.uniform(0.13, 0.16), lung_ry = p.uniform(0.27, 0.32);
  const double left_x = 0.31 + side, right_x = 0.69 + side, lung_y = 0.45;
  torch::Tensor d = torch::full({n, n}, 0.04, torch::kDouble);
  d.masked_fill_(p.ellipse(0.5 + side, 0.55, 0.44, 0.62), 0.45);
  const torch::Tensor lungs = p.ellipse(left_x, lung_y, lung_rx, lung_ry) | p.ellipse(right_x, lung_y, lung_rx, lung_ry);
  d.masked_fill_(lungs, 0.14);
  // Ribs: faint periodic arcs across the lung fields.
  d += 0.06 * lungs.to(torch::kDouble) * ((p.yy() * 38 + 3 * (p.xx() - 0.5).pow(2) * 38).sin() > 0.85).to(torch::kDouble);
  std::vector<Drawn> drawn;
  auto present = [&](size_t f) { return p.uniform(0, 1) < kFindings[f].probability; };
  // Heart (larger with cardiomegaly), then spine and diaphragm.
  const bool cardiomegaly = present(4);
  const double heart_rx = cardiomegaly ? p.uniform(0.17, 0.2) : p.uniform(0.1, 0.12), heart_ry = p.uniform(0.11, 0.13);
  const double heart_x = 0.53 + side, heart_y = 0.64;
  d.masked_fill_(p.ellipse(heart_x, heart_y, heart_rx, heart_ry), 0.68);
  if (cardiomegaly) drawn.push_back({4, p.box(heart_x, heart_y, heart_rx, heart_ry)});
  d.masked_fill_(((p.xx() - 0.5 - side).abs() < 0.03) & p.ellipse(0.5 + side, 0.55, 0.44, 0.62), 0.74);
  d.masked_fill_((p.yy() > 0.78) & p.ellipse(0.5 + side, 0.55, 0.44, 0.62), 0.55);
  if (present(5)) {  // aortic knob bulging left of the upper mediastinum
    const double cx = 0.57 + side, cy = 0.33, r = p.uniform(0.045, 0.06);
    d.masked_fill_(p.ellipse(cx, cy, r, r), 0.7);
    drawn.push_back({5, p.box(cx, cy, r, r)});
  }
  auto lung_point = [&](double& cx, double& cy) {  // inside one lung, away from its border
    const bool left = p.uniform(0, 1) < 0.5;
    const double a = p.uniform(0, 2 * M_PI), r = std::sqrt(p.uniform(0, 0.45));
    cx = (left ? left_x : right_x) + r * lung_rx * std::cos(a);
    cy = lung_y + r * lung_ry * std::sin(a);
  };
  if (present(0)) {
    double cx, cy;
    lung_point(cx, cy);
    const double r = p.uniform(0.025, 0.05);
    d += 0.42 * p.ellipse(cx, cy, r, r).to(torch::kDouble);
    drawn.push_back({0, p.box(cx, cy, r, r)});
  }
  if (present(1)) {
    double cx, cy;
    lung_point(cx, cy);
    const double s = p.uniform(0.05, 0.08);
    d += 0.28 * p.gaussian(cx, cy, s) * lungs.to(torch::kDouble);
    drawn.push_back({1, p.box(cx, cy, 1.5 * s, 1.5 * s)});
  }
  if (present(2)) {
    double cx, cy;
    lung_point(cx, cy);
    cy = std::max(cy, lung_y + 0.05);  // lower zones
    const double rx = p.uniform(0.06, 0.09), ry = p.uniform(0.05, 0.07);
    d.masked_fill_(p.ellipse(cx, cy, rx, ry) & lungs, 0.5);
    drawn.push_back({2, p.box(cx, cy, rx, ry)});
  }
  if (present(3)) {  // fluid filling the base of one lung up to a level
    const bool left = p.uniform(0, 1) < 0.5;
    const double cx = left ? left_x : right_x, level = lung_y + lung_ry * p.uniform(0.35, 0.6);
    d.masked_fill_(p.ellipse(cx, lung_y, lung_rx, lung_ry) & (p.yy() > level), 0.6);
    drawn.push_back({3, p.box(cx, (level + lung_y + lung_ry) / 2, lung_rx, (lung_y + lung_ry - level) / 2)});
  }
  d += torch::randn({n, n}, p.generator(), torch::TensorOptions().dtype(torch::kDouble)) * 0.012;
  return {d.clamp(0, 1), drawn};
}

// 32 lowercase hex digits, like the real image ids.
std::string image_id(uint64_t seed, uint64_t split, uint64_t index) {
  return fmt::format("{:016x}{:016x}", mix_seed(seed, split, index), mix_seed(seed ^ 0x5eed, split, index));
}

size_t label_index(std::string_view name) {
  for (size_t i = 0; i < kLocalLabels.size(); ++i)
    if (kLocalLabels[i] == name) return i;
  for (size_t i = 0; i < kGlobalLabels.size(); ++i)
    if (kGlobalLabels[i] == name) return kLocalLabels.size() + i;
  fail("vindr-cxr synth: unknown label {}", name);
}

std::string label_row(const std::vector<const Drawn*>& seen) {
  std::array<int, kNumLabels> v{};
  for (const Drawn* d : seen) {
    v[label_index(kFindings[d->finding].name)] = 1;
    if (!kFindings[d->finding].implies.empty()) v[label_index(kFindings[d->finding].implies)] = 1;
  }
  v.back() = seen.empty() ? 1 : 0;
  std::string out;
  for (int x : v) out += fmt::format(",{}", x);
  return out;
}

std::string csv_field(std::string_view s) { return s.find(',') != std::string_view::npos ? fmt::format("\"{}\"", s) : std::string(s); }

SynthResult write_vindr_cxr(const SynthOptions& o, const fs::path& root) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(mix_seed(o.seed, 0xC8));
  Painter painter(o.size, g);
  fs::create_directories(root / "annotations");
  std::string header_labels;
  for (auto l : kLocalLabels) header_labels += "," + csv_field(l);
  int64_t files = 0, boxes_written = 0;
  const int64_t max_value = (int64_t{1} << o.bits_stored) - 1;
  for (const std::string split : {"train", "test"}) {
    const bool train = split == "train";
    fs::create_directories(root / split);
    std::ofstream labels(root / "annotations" / ("image_labels_" + split + ".csv"));
    std::ofstream boxes(root / "annotations" / ("annotations_" + split + ".csv"));
    std::string header_globals;
    for (auto l : kGlobalLabels) header_globals += "," + std::string(!train && l == kGlobalLabels[4] ? kOtherDiseaseTestSpelling : l);
    labels << (train ? "image_id,rad_id" : "image_id") << header_labels << header_globals << "\n";
    boxes << (train ? "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n" : "image_id,class_name,x_min,y_min,x_max,y_max\n");
    const int64_t count = train ? o.train : o.test;
    for (int64_t i = 0; i < count; ++i) {
      const std::string id = image_id(o.seed, train ? 1 : 2, static_cast<uint64_t>(i));
      auto [density, drawn] = draw_radiograph(painter, o.size);
      // 12-bit stored values; every third image is MONOCHROME1 (stored inverted), as scanners differ.
      torch::Tensor stored = (density * (0.75 * max_value) + 0.1 * max_value).round().clamp(0, max_value).to(torch::kInt32);
      image::DicomWriteOptions w;
      w.bits_stored = static_cast<int>(o.bits_stored);
      w.patient_id = id.substr(0, 8);
      w.window = std::make_pair(max_value / 2.0 + 0.5, static_cast<double>(max_value + 1));
      if (i % 3 == 2) {
        w.photometric = "MONOCHROME1";
        stored = max_value - stored;
      }
      image::write_dicom(root / split / (id + ".dicom"), stored, w);
      ++files;
      // Who saw what: the test consensus sees everything exactly; a train reader misses a finding
      // 15% of the time and draws its box up to 4% of the box size off on each side.
      std::vector<int64_t> readers = {0};
      if (train) {
        std::set<int64_t> chosen;
        while (chosen.size() < 3) chosen.insert(1 + static_cast<int64_t>(painter.uniform(0, 17)) % 17);
        readers.assign(chosen.begin(), chosen.end());
      }
      for (int64_t reader : readers) {
        std::vector<const Drawn*> seen;
        std::vector<std::array<double, 4>> seen_boxes;
        for (const Drawn& d : drawn) {
          if (train && painter.uniform(0, 1) < 0.15) continue;
          std::array<double, 4> b = d.box;
          if (train) {
            const double bw = b[2] - b[0], bh = b[3] - b[1];
            for (int k = 0; k < 4; ++k) b[static_cast<size_t>(k)] += painter.uniform(-0.04, 0.04) * (k % 2 ? bh : bw);
          }
          seen.push_back(&d);
          seen_boxes.push_back(b);
        }
        const std::string who = train ? fmt::format("{},R{}", id, reader) : id;
        labels << who << label_row(seen) << "\n";
        if (seen.empty()) boxes << who << ",No finding,,,,\n";
        for (size_t k = 0; k < seen.size(); ++k) {
          const auto& b = seen_boxes[k];
          const double s = static_cast<double>(o.size);
          boxes << fmt::format("{},{},{:.1f},{:.1f},{:.1f},{:.1f}\n", who, csv_field(kFindings[seen[k]->finding].name),
                               std::clamp(b[0], 0.0, s), std::clamp(b[1], 0.0, s), std::clamp(b[2], 0.0, s), std::clamp(b[3], 0.0, s));
          ++boxes_written;
        }
      }
    }
    labels.close();
    boxes.close();
    if (!labels || !boxes) fail("{}: cannot write the annotation CSVs", (root / "annotations").string());
    files += 2;
  }
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("vindr-cxr: {} train (3 readers each) + {} test DICOM radiographs ({}x{}, {}-bit), {} boxes",
                          o.train, o.test, o.size, o.size, o.bits_stored, boxes_written);
  return r;
}

FACET_REGISTER(synth_registry(), "vindr-cxr",
               "Radiograph-like 12-bit DICOMs with drawn findings + the four VinDr-CXR CSVs (options: train, test, size, bits_stored, seed)",
               synth_writer<SynthOptions>(write_vindr_cxr));

}  // namespace
}  // namespace facet::data::vindr_cxr
