// `facet data synth deeplesion`: a small DeepLesion in the published layout (uint16 PNG slices with
// HU + 32768, DL_info.csv with every column) whose lesions a detector can learn: CT-like slices
// (air, a soft-tissue body, lungs, a bone ring) with brighter ellipsoidal lesions that span
// neighbouring slices, measured the way the real annotations are (RECIST axes; boxes = RECIST
// extremes ± 5 px, 1-based).
#include "data/deeplesion/deeplesion.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace facet::data::deeplesion {
namespace {

namespace fs = std::filesystem;

struct SynthOptions {
  int64_t patients = 12, lesions_per_patient = 3, size = 128, slices = 24;
  uint64_t seed = 0;

  static SynthOptions from(const Config& c) {
    SynthOptions o;
    o.patients = c.get<int64_t>("patients", o.patients);
    o.lesions_per_patient = c.get<int64_t>("lesions_per_patient", o.lesions_per_patient);
    o.size = c.get<int64_t>("size", o.size);
    o.slices = c.get<int64_t>("slices", o.slices);
    o.seed = c.get<uint64_t>("seed", o.seed);
    if (o.patients < 3) fail("{}: {}: need at least 3 (one per split)", c.where("patients"), c.full_key("patients"));
    if (o.size < 32 || o.size > 1024) fail("{}: {}: expected 32..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    if (o.slices < 8) fail("{}: {}: expected at least 8, got {}", c.where("slices"), c.full_key("slices"), o.slices);
    if (o.lesions_per_patient < 1) fail("{}: {}: expected >= 1", c.where("lesions_per_patient"), c.full_key("lesions_per_patient"));
    return o;
  }
};

std::string quoted(const std::vector<double>& v) {
  std::vector<std::string> parts;
  for (double x : v) parts.push_back(fmt::format("{:.4g}", x));
  return fmt::format("\"{}\"", join(parts));
}

SynthResult write_deeplesion(const SynthOptions& o, const fs::path& root) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(mix_seed(o.seed, 0xDEE9));
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * torch::rand({1}, g, torch::TensorOptions().dtype(torch::kDouble)).item<double>(); };
  const int64_t n = o.size;
  fs::create_directories(root / "Images_png");
  std::ofstream csv(root / "DL_info.csv");
  for (size_t i = 0; i < kColumns.size(); ++i) csv << (i ? "," : "") << kColumns[i];
  csv << "\n";
  int64_t files = 1, lesions = 0;
  const auto axis = torch::arange(n, torch::kDouble) + 0.5;
  const auto yy = axis.view({-1, 1}).expand({n, n}), xx = axis.view({1, -1}).expand({n, n});
  for (int64_t p = 1; p <= o.patients; ++p) {
    const int split = p % 5 == 0 ? 3 : p % 5 == 4 ? 2 : 1;  // roughly 60/20/20 by patient
    const double sz = std::vector<double>{1.0, 2.5, 5.0}[static_cast<size_t>(p % 3)];
    const double sxy = uniform(0.6, 0.9) * 512.0 / static_cast<double>(n);
    const std::string series = fmt::format("{:06d}_01_01", p);
    const fs::path dir = root / "Images_png" / series;
    fs::create_directories(dir);
    // The volume: body ellipse, two lungs, a bone ring; lesions as ellipsoids in mm.
    const double bx = n * uniform(0.36, 0.44), by = n * uniform(0.30, 0.38);
    struct Blob { double x, y, z, rx, ry, rz, hu; };
    std::vector<Blob> blobs;
    for (int64_t l = 0; l < o.lesions_per_patient; ++l) {
      const double angle = uniform(0, 2 * M_PI), radius = uniform(0.15, 0.65);
      blobs.push_back({n / 2.0 + radius * bx * std::cos(angle), n / 2.0 + radius * by * std::sin(angle),
                       uniform(0.3, 0.7) * static_cast<double>(o.slices - 1) + 1, uniform(6, 18) / sxy,
                       uniform(6, 18) / sxy, uniform(4, 10), uniform(120, 200)});
    }
    for (int64_t z = 1; z <= o.slices; ++z) {
      auto ellipse = [&](double cx, double cy, double rx, double ry) {
        return ((xx - cx) / rx).pow(2) + ((yy - cy) / ry).pow(2) <= 1;
      };
      torch::Tensor hu = torch::full({n, n}, -1000.0, torch::kDouble);
      hu.masked_fill_(ellipse(n / 2.0, n / 2.0, bx, by), 40.0);
      hu.masked_fill_(ellipse(n / 2.0 - bx * 0.45, n / 2.0 - by * 0.1, bx * 0.3, by * 0.55), -820.0);
      hu.masked_fill_(ellipse(n / 2.0 + bx * 0.45, n / 2.0 - by * 0.1, bx * 0.3, by * 0.55), -820.0);
      hu.masked_fill_(ellipse(n / 2.0, n / 2.0, bx, by) & ~ellipse(n / 2.0, n / 2.0, bx * 0.92, by * 0.9), 700.0);
      for (const auto& b : blobs) {
        const double dz = (static_cast<double>(z) - b.z) * sz / b.rz;
        if (std::abs(dz) >= 1) continue;
        const double shrink = std::sqrt(1 - dz * dz);
        hu.masked_fill_(ellipse(b.x, b.y, b.rx * shrink, b.ry * shrink), b.hu);  // bright in lung and tissue alike
      }
      hu = hu + torch::randn({n, n}, g, torch::TensorOptions().dtype(torch::kDouble)) * 12.0;
      const torch::Tensor stored = (hu + kHuOffset).round().clamp(0, 65535).to(torch::kInt32).contiguous();
      cv::Mat png(static_cast<int>(n), static_cast<int>(n), CV_16UC1);
      const int32_t* src = stored.data_ptr<int32_t>();
      for (int64_t i = 0; i < n * n; ++i) png.at<uint16_t>(static_cast<int>(i)) = static_cast<uint16_t>(src[i]);
      const fs::path file = dir / fmt::format("{:03d}.png", z);
      if (!cv::imwrite(file.string(), png)) fail("{}: cannot write the PNG", file.string());
      ++files;
    }
    // One DL_info row per lesion, on the slice through its centre. RECIST: the long axis along the
    // larger radius, the short one across it; box = their extremes ± 5 px; 1-based coordinates.
    for (const auto& b : blobs) {
      const int64_t key = std::clamp<int64_t>(std::lround(b.z), 1, o.slices);
      const double lx = b.rx >= b.ry ? b.rx : 0, ly = b.rx >= b.ry ? 0 : b.ry;
      const double sx = b.rx >= b.ry ? 0 : b.rx, sy = b.rx >= b.ry ? b.ry : 0;
      const double x = b.x + 0.5, y = b.y + 0.5;  // to 1-based pixel coordinates
      const std::vector<double> recist = {x - lx, y - ly, x + lx, y + ly, x - sx, y - sy, x + sx, y + sy};
      const double x1 = std::min(x - lx, x - sx) - 5, x2 = std::max(x + lx, x + sx) + 5;
      const double y1 = std::min(y - ly, y - sy) - 5, y2 = std::max(y + ly, y + sy) + 5;
      const int64_t first = std::max<int64_t>(1, key - static_cast<int64_t>(std::ceil(30 / sz)));
      const int64_t last = std::min<int64_t>(o.slices, key + static_cast<int64_t>(std::ceil(30 / sz)));
      const int type = split == 1 ? -1 : 2 + static_cast<int>(lesions % 3);
      csv << fmt::format("{}_{:03d}.png,{},1,1,{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", series, key, p, key,
                         quoted(recist), quoted({x1, y1, x2, y2}), quoted({2 * std::max(b.rx, b.ry), 2 * std::min(b.rx, b.ry)}),
                         quoted({b.x / n, b.y / n, b.z / o.slices}), type, 0, quoted({double(first), double(last)}),
                         quoted({sxy, sxy, sz}), quoted({double(n), double(n)}), quoted({-175, 275}), p % 2 ? "F" : "M",
                         40 + p % 30, split);
      ++lesions;
    }
  }
  csv.close();
  if (!csv) fail("{}: cannot write", (root / "DL_info.csv").string());
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("deeplesion: {} patients, {} slices each ({}x{} px), {} lesions", o.patients, o.slices, n, n, lesions);
  return r;
}

FACET_REGISTER(synth_registry(), "deeplesion",
               "CT-like uint16 PNG slices with lesion blobs + DL_info.csv (options: patients, lesions_per_patient, size, slices, seed)",
               synth_writer<SynthOptions>(write_deeplesion));

}  // namespace
}  // namespace facet::data::deeplesion
