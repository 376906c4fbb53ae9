// `facet data synth brats`: a small BraTS in the published layout (data/brats/brats.h): per case an
// ellipsoidal skull-stripped "brain" with smooth tissue texture and two CSF-filled ventricles, and a
// roughly spherical glioma with a lumpy edge — necrotic centre (label 1), enhancing ring (4), oedema
// shell (2) — spanning a few slices, so some brain slices have no tumour and the top and bottom ones
// no brain. Four modalities with their typical contrasts (T2: tissue ~200–900, tumour ~1100–1600;
// FLAIR: bright oedema, dark CSF; T1: dark tumour; T1ce: bright enhancing ring), int16, 1 mm voxels.
#include "data/brats/brats.h"
#include "data/face/synth_face.h"
#include "data/image/nifti.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <cmath>
#include <filesystem>

namespace facet::data::brats {
namespace {

namespace fs = std::filesystem;

struct BratsSynthOptions {
  int64_t cases = 6, size = 64, slices = 24, lgg = 0;
  uint64_t seed = 0;

  static BratsSynthOptions from(const Config& c) {
    BratsSynthOptions o;
    o.cases = c.get_in_range<int64_t>("cases", o.cases, Range::closed(1, 1000));
    o.size = c.get_in_range<int64_t>("size", o.size, Range::closed(32, 256));
    o.slices = c.get_in_range<int64_t>("slices", o.slices, Range::closed(8, 155));
    o.lgg = c.get_in_range<int64_t>("lgg", o.lgg, Range::closed(0, static_cast<double>(o.cases)));
    o.seed = c.get<uint64_t>("seed", o.seed);
    return o;
  }
};

// Intensities of one modality: brain tissue base + amplitude x texture, CSF, and the three tumour parts.
struct BratsContrast {
  std::string_view name;
  double base, amplitude, csf, oedema, enhancing, necrosis;
};
constexpr BratsContrast kBratsContrasts[] = {
    {"flair", 330, 80, 90, 700, 650, 260},
    {"t1", 420, -90, 150, 300, 330, 200},
    {"t1ce", 420, -90, 150, 320, 950, 200},
    {"t2", 560, 180, 880, 1150, 1300, 1500},
};

// Writes one case's four modalities and its seg into `dir`.
void write_brats_case(const BratsSynthOptions& o, int64_t index, const fs::path& dir, const std::string& name) {
  face::SynthRng rng(mix_seed(o.seed, 0xB7A75, static_cast<uint64_t>(index)));
  auto g = at::make_generator<at::CPUGeneratorImpl>(rng.next());
  const int64_t nz = o.slices, n = o.size;
  // Voxel centres in [-1, 1] along each axis.
  const auto z = torch::linspace(-1, 1, nz).view({nz, 1, 1}), y = torch::linspace(-1, 1, n).view({1, n, 1}),
             x = torch::linspace(-1, 1, n).view({1, 1, n});
  // Smooth random fields in about [-1, 1]: a coarse grid of random values, trilinearly enlarged.
  auto smooth = [&](int64_t coarse_z, int64_t coarse_xy) {
    const auto coarse = torch::rand({1, 1, coarse_z, coarse_xy, coarse_xy}, g) * 2 - 1;
    return torch::upsample_trilinear3d(coarse, {nz, n, n}, /*align_corners=*/true)[0][0];
  };
  // The brain fills most of each slice and about 80 % of the slices.
  const double az = rng.uniform(0.76, 0.84), ay = rng.uniform(0.78, 0.88), ax = rng.uniform(0.62, 0.72);
  const double ey = rng.uniform(-0.04, 0.04);
  const auto brain = (z / az).square() + ((y - ey) / ay).square() + (x / ax).square() < 1;
  const auto csf = ((z / 0.3).square() + ((y - ey + 0.05) / 0.3).square() + ((x.abs() - 0.12) / 0.07).square() < 1) & brain;
  const auto tissue = smooth(4, 6), lumps = smooth(3, 4), jitter = smooth(3, 5);

  // The tumour: a ball of radius r voxels in-plane (at most 0.2 of the slices in z), inside the brain.
  const double r = rng.uniform(0.07, 0.11) * static_cast<double>(n), rz = std::min(r, 0.2 * static_cast<double>(nz));
  const double cz = rng.uniform(-0.35, 0.35) * az, cy = ey + rng.uniform(-0.4, 0.4) * ay, cx = rng.uniform(-0.4, 0.4) * ax;
  const double ry_norm = r * 2 / static_cast<double>(n - 1), rz_norm = rz * 2 / static_cast<double>(nz - 1);
  const auto d = ((z - cz) / rz_norm).square().add(((y - cy) / ry_norm).square()).add(((x - cx) / ry_norm).square()).sqrt() *
                 (1 + 0.15 * lumps);
  const auto oedema = (d < 1) & brain, enhancing = (d < 0.6) & brain, necrosis = (d < 0.35) & brain;
  torch::Tensor seg = torch::zeros({nz, n, n});
  seg.masked_fill_(oedema, 2).masked_fill_(enhancing, 4).masked_fill_(necrosis, 1);
  image::write_nifti(dir / (name + "_seg.nii.gz"), seg, {1, 1, 1}, image::kNiftiUint8);

  for (const BratsContrast& m : kBratsContrasts) {
    torch::Tensor v = m.base + m.amplitude * tissue;
    v.masked_fill_(csf, m.csf);
    v = torch::where(oedema, m.oedema + 40 * jitter, v);
    v = torch::where(enhancing, m.enhancing + 40 * jitter, v);
    v = torch::where(necrosis, m.necrosis + 40 * jitter, v);
    v = v + 12 * torch::randn({nz, n, n}, g);
    // Background exactly 0, every brain voxel > 0 (the reader's brain mask).
    v = torch::where(brain, v.clamp_min(1), 0.0);
    image::write_nifti(dir / fmt::format("{}_{}.nii.gz", name, m.name), v, {1, 1, 1}, image::kNiftiInt16);
  }
}

SynthResult write_brats(const BratsSynthOptions& o, const fs::path& root) {
  for (int64_t i = 0; i < o.cases; ++i) {
    const std::string grade = i < o.cases - o.lgg ? "HGG" : "LGG";
    const std::string name = fmt::format("BraTS19_SYN_{:03d}_1", i + 1);
    const fs::path dir = root / grade / name;
    fs::create_directories(dir);
    write_brats_case(o, i, dir, name);
  }
  SynthResult r;
  r.root = root;
  r.files = o.cases * 5;
  r.summary = fmt::format("brats: {} cases ({} HGG, {} LGG) of {}x{}x{} voxels: flair, t1, t1ce, t2 (int16) and seg "
                          "(uint8: 1 necrosis, 2 oedema, 4 enhancing)",
                          o.cases, o.cases - o.lgg, o.lgg, o.size, o.size, o.slices);
  return r;
}

FACET_REGISTER(synth_registry(), "brats",
               "Brain MRI volumes with a glioma in BraTS's HGG/LGG layout, NIfTI (options: cases, size, slices, lgg, seed)",
               synth_writer<BratsSynthOptions>(write_brats));

}  // namespace
}  // namespace facet::data::brats
