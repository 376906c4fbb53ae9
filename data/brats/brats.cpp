// The BraTS reader ("brats"): axial slices of one MRI modality with the tumour mask, preprocessed
// exactly as GVS ("Generator Versus Segmentor", github.com/Au3C2/GVS, utils/nii2npy_brats.py) prepares
// BraTS 2019 for pseudo-healthy synthesis, with SMILE's semi-supervised setting (only a share of the
// training cases keep their masks). Layout and labels: data/brats/brats.h.
//
//   data:
//     name: brats
//     root: /data/MICCAI_BraTS_2019_Data_Training  # holds HGG/ and LGG/, or the case folders themselves
//     grades: [HGG]           # sub-folders of root to read (GVS: HGG); when none of them exists,
//                             # root's own sub-folders are the cases
//     modality: t2            # flair, t1, t1ce or t2
//     split: {train: 0.8, val: 0.1, test: 0.1}  # shares of the cases, taken in the order of a hash of
//                             # the case name and split_seed (a share > 0 gets at least one case)
//     split_seed: 0
//     cases: {train: train.txt, val: val.txt}  # instead of split: files of case names, one a line
//                             # (# comments); a case may be in one list only
//     clip_percentile: 99.5   # per case, intensities above this percentile of the volume's voxels
//                             # are set to it (GVS's find995: the smallest whole intensity v >= 1
//                             # with more than 99.5 % of the voxels, background included, at or
//                             # below v); null: no clip
//     clip_max: 1470          # instead: a fixed clip (GVS's first release measured 1470 once on HGG
//                             # T2 and wrote it in); give one of the two
//     slice_range: [-1, 1]    # each slice's min..max (background included) mapped linearly onto
//                             # this range after the z-score, as GVS's BrainDataset does for its
//                             # tanh generator; absent: the z-scores as they are
//     slices: lesion          # or brain, or per split {train: lesion, val: brain}. lesion: the slices
//                             # with any seg > 0 (GVS's tumour-only training list); brain: every slice
//                             # with a voxel > 0. Default: lesion for train, brain for the others
//     labelled_fraction: 1.0  # SMILE: this share of the training cases (at least one when > 0),
//                             # chosen by a hash with labelled_seed, keep their masks; the others give
//                             # an all-zero mask and labelled = 0. Other splits are always labelled
//     labelled_seed: 0
//
// Preprocessing of a case (GVS, utils/nii2npy_brats.py and utils/dataset.py at 50fbb49): clip; brain
// = voxels > 0; z-score with the brain voxels' mean and sample standard deviation (ddof = 1) over the
// whole volume, the background set to exactly 0; then, with slice_range, each slice rescaled. Slice selection reads the seg of unlabelled cases too: it stands for knowing which images are
// abnormal (image-level labels), not for the pixel masks SMILE does without.
//
// A sample (axial slice z of a case): fields image float32 [1, H, W] (normalised), mask [1, H, W]
// (seg > 0; zeros when unlabelled), brain_mask [1, H, W] (voxel > 0 before normalisation), labelled
// [] (1 or 0); id "<case>/<z, 3 digits>". The volumes are read when the dataset is built (a few
// threads) and only the chosen slices are kept, the image as float16 and the masks as uint8.
#include "core/log.h"
#include "core/text.h"
#include "data/brats/brats.h"
#include "data/dataset.h"
#include "data/image/nifti.h"
#include "data/sampler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <thread>

namespace facet::data::brats {
namespace {

namespace fs = std::filesystem;

struct BratsCase {
  std::string name;  // the folder's name, e.g. BraTS19_CBICA_ASW_1
  fs::path dir;
};

// A stable pseudo-random order of case names for a seed: FNV-1a of the name, mixed with the seed
// (the same on every machine and standard library, unlike std::hash).
uint64_t brats_hash(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return mix_seed(seed, h);
}

void brats_sort_by_hash(std::vector<BratsCase>& cases, uint64_t seed) {
  std::sort(cases.begin(), cases.end(), [seed](const BratsCase& a, const BratsCase& b) {
    const uint64_t ha = brats_hash(a.name, seed), hb = brats_hash(b.name, seed);
    return ha != hb ? ha < hb : a.name < b.name;
  });
}

void brats_sort_by_name(std::vector<BratsCase>& cases) {
  std::sort(cases.begin(), cases.end(), [](const BratsCase& a, const BratsCase& b) { return a.name < b.name; });
}

std::vector<fs::path> brats_subfolders(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory() && it->path().filename().string().rfind('.', 0) != 0) out.push_back(it->path());
  if (ec) fail("{}: cannot list the folder: {}", dir.string(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// The case folders: <root>/<grade>/<case> for the grades present, else <root>/<case>.
std::vector<BratsCase> brats_find_cases(const Config& c, const fs::path& root, const std::vector<std::string>& grades) {
  if (!fs::is_directory(root)) fail("{}: {}: {} is not a folder", c.where("root"), c.full_key("root"), root.string());
  std::vector<std::string> present, missing;
  for (const auto& g : grades) (fs::is_directory(root / g) ? present : missing).push_back(g);
  std::vector<fs::path> dirs;
  if (present.empty()) {
    dirs = brats_subfolders(root);
    for (const auto& d : dirs)
      if (d.filename() == "HGG" || d.filename() == "LGG")
        fail("{}: {}: {} has no {} folder but has {}: list the grades to read", c.where("grades"), c.full_key("grades"),
             root.string(), join(grades, ", "), d.filename().string());
  } else {
    if (!missing.empty())
      fail("{}: {}: {} has no {} folder (found: {})", c.where("grades"), c.full_key("grades"), root.string(),
           join(missing, ", "), join(present, ", "));
    for (const auto& g : present) {
      const auto sub = brats_subfolders(root / g);
      if (sub.empty()) log::warn("brats: {} holds no case folders", (root / g).string());
      dirs.insert(dirs.end(), sub.begin(), sub.end());
    }
  }
  if (dirs.empty())
    fail("{}: {}: no case folders under {} (expected <root>/{}/<case>/<case>_<modality>.nii.gz, or <root>/<case>/...)",
         c.where("root"), c.full_key("root"), root.string(), grades.empty() ? "HGG" : grades.front());
  std::vector<BratsCase> cases;
  std::set<std::string> names;
  for (const auto& d : dirs) {
    BratsCase k{d.filename().string(), d};
    if (!names.insert(k.name).second) fail("{}: a second case folder named {} (one per case across the grades)", d.string(), k.name);
    cases.push_back(std::move(k));
  }
  brats_sort_by_name(cases);
  return cases;
}

// How many of n cases each share gets: the floors, the rest to the largest remainders (earlier
// splits first on ties), then a case for every share > 0 that got none, taken from the largest.
std::vector<int64_t> brats_split_counts(int64_t n, const std::vector<double>& shares) {
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  std::vector<int64_t> k(shares.size());
  std::vector<double> rest(shares.size());
  int64_t used = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    const double exact = static_cast<double>(n) * shares[i] / total;
    k[i] = static_cast<int64_t>(std::floor(exact));
    rest[i] = exact - static_cast<double>(k[i]);
    used += k[i];
  }
  std::vector<size_t> order(shares.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rest[a] > rest[b]; });
  for (size_t j = 0; used < n; j = (j + 1) % order.size())
    if (shares[order[j]] > 0) ++k[order[j]], ++used;
  for (size_t i = 0; i < shares.size(); ++i) {
    if (shares[i] <= 0 || k[i] > 0) continue;
    const auto largest = static_cast<size_t>(std::max_element(k.begin(), k.end()) - k.begin());
    if (k[largest] > 1) --k[largest], ++k[i];
  }
  return k;
}

std::string brats_trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// Split name -> its cases (by name), from `cases` lists or `split` shares.
std::map<std::string, std::vector<BratsCase>> brats_assign_splits(const Config& c, const std::vector<BratsCase>& all,
                                                                  const fs::path& root) {
  std::map<std::string, std::vector<BratsCase>> out;
  if (c.has("cases")) {
    if (c.has("split"))
      fail("{}: {}: set either split (shares) or cases (lists of names), not both", c.where("cases"), c.full_key("cases"));
    const Config node = c.at("cases");
    if (!node.is_map()) fail("{}: {}: expected a map of split name to a file of case names", c.where("cases"), c.full_key("cases"));
    std::map<std::string, const BratsCase*> by_name;
    for (const auto& k : all) by_name[k.name] = &k;
    std::map<std::string, std::string> taken;  // case -> the list that has it
    for (const auto& split : node.keys()) {
      const fs::path file = node.get<std::string>(split);
      std::ifstream in(file);
      if (!in) fail("{}: {}: cannot read the case list {}", node.where(split), node.full_key(split), file.string());
      auto& cases = out[split];
      std::string line;
      for (int64_t n = 1; std::getline(in, line); ++n) {
        const std::string name = brats_trim(line.substr(0, line.find('#')));
        if (name.empty()) continue;
        const auto found = by_name.find(name);
        if (found == by_name.end()) fail("{}:{}: no case folder {} under {}", file.string(), n, name, root.string());
        const auto [where, added] = taken.emplace(name, split);
        if (!added) fail("{}:{}: case {} is already in the {} list", file.string(), n, name, where->second);
        cases.push_back(*found->second);
      }
      brats_sort_by_name(cases);
    }
    return out;
  }
  std::vector<std::string> names = {"train", "val", "test"};
  std::vector<double> shares = {0.8, 0.1, 0.1};
  if (c.has("split")) {
    const Config node = c.at("split");
    if (!node.is_map()) fail("{}: {}: expected a map of split name to a share, e.g. {{train: 0.8, val: 0.1, test: 0.1}}", c.where("split"), c.full_key("split"));
    names = node.keys();
    shares.clear();
    for (const auto& name : names) shares.push_back(node.get_in_range<double>(name, Range::closed(0, 1)));
    const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
    if (std::abs(total - 1) > 1e-6) fail("{}: {}: the shares add up to {}, not 1", c.where("split"), c.full_key("split"), total);
  }
  const uint64_t seed = c.get<uint64_t>("split_seed", 0);
  std::vector<BratsCase> ordered = all;
  brats_sort_by_hash(ordered, seed);
  const auto counts = brats_split_counts(static_cast<int64_t>(ordered.size()), shares);
  size_t next = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    auto& cases = out[names[i]];
    for (int64_t j = 0; j < counts[i]; ++j) cases.push_back(ordered[next++]);
    brats_sort_by_name(cases);
  }
  return out;
}

// `<case>_<what>.nii.gz` in the case folder (or the uncompressed .nii some copies unpack to).
fs::path brats_file(const BratsCase& k, std::string_view what) {
  const fs::path gz = k.dir / fmt::format("{}_{}.nii.gz", k.name, what);
  if (fs::exists(gz)) return gz;
  const fs::path plain = k.dir / fmt::format("{}_{}.nii", k.name, what);
  if (fs::exists(plain)) return plain;
  fail("{}: case {} has no {} volume: missing {}", k.dir.string(), k.name, what, gz.filename().string());
}

struct BratsPreprocess {
  std::string modality = "t2";
  std::optional<double> clip_percentile = 99.5, clip_max;  // at most one set
  std::optional<std::pair<double, double>> slice_range;
  bool lesion_slices = false;  // else every brain slice
};

// GVS's find995 for percentile p: over the voxels' whole parts (background included), the smallest
// v >= 1 whose cumulative share exceeds p / 100 — the (floor(N p / 100) + 1)-th smallest whole part.
double brats_percentile_clip(const torch::Tensor& x, double percentile) {
  const torch::Tensor whole = x.flatten().trunc();
  const int64_t n = whole.numel();
  const int64_t rank = std::min<int64_t>(n, static_cast<int64_t>(std::floor(static_cast<double>(n) * percentile / 100)) + 1);
  return std::max(1.0, std::get<0>(whole.kthvalue(rank)).item<double>());
}

// The kept slices of one case.
struct BratsVolume {
  std::string name;
  std::vector<int64_t> z;      // the slices' indices in the volume
  torch::Tensor image;         // float16 [n, H, W], normalised
  torch::Tensor mask, brain;   // uint8 [n, H, W]; mask undefined when the case is unlabelled
  bool labelled = true;
};

std::string brats_shape(const torch::Tensor& t) { return fmt::format("{}", fmt::join(t.sizes(), "x")); }

BratsVolume brats_load_case(const BratsCase& k, const BratsPreprocess& p, bool labelled) {
  const fs::path image_path = brats_file(k, p.modality), seg_path = brats_file(k, kSegName);
  torch::Tensor x = image::read_nifti(image_path).data;  // [Z, Y, X]
  const torch::Tensor seg = image::read_nifti(seg_path).data;
  if (seg.sizes() != x.sizes())
    fail("{}: the seg volume is {} voxels (z x y x x), the {} volume {} is {}", seg_path.string(), brats_shape(seg),
         p.modality, image_path.filename().string(), brats_shape(x));
  if (p.clip_percentile) x = x.clamp_max(brats_percentile_clip(x, *p.clip_percentile));
  if (p.clip_max) x = x.clamp_max(*p.clip_max);
  const torch::Tensor brain = x > 0;
  const torch::Tensor values = x.masked_select(brain).to(torch::kDouble);
  if (values.numel() < 2)
    fail("{}: {} voxel(s) above 0: the brain's mean and standard deviation need at least 2", image_path.string(), values.numel());
  const double mean = values.mean().item<double>(), sd = values.std().item<double>();  // sample std (ddof = 1), as GVS
  if (!std::isfinite(mean) || !(sd > 0) || !std::isfinite(sd))
    fail("{}: the brain voxels have mean {} and standard deviation {}: cannot z-score them", image_path.string(), mean, sd);
  // where, not GVS's multiplication by the mask: the same values, but +0 (not -0) in the background.
  const torch::Tensor normalised = torch::where(brain, (x - mean) / sd, 0.0);
  const torch::Tensor lesion = seg > 0;
  const torch::Tensor keep = (p.lesion_slices ? lesion : brain).flatten(1).any(1);
  const torch::Tensor index = keep.nonzero().flatten();
  torch::Tensor kept = normalised.index_select(0, index);
  if (p.slice_range) {  // ((s - min) / (max - min)) onto [lo, hi] per slice; a constant slice at the middle
    const auto [lo, hi] = *p.slice_range;
    const torch::Tensor smin = kept.flatten(1).amin(1).view({-1, 1, 1}), smax = kept.flatten(1).amax(1).view({-1, 1, 1});
    const torch::Tensor span = smax - smin;
    kept = torch::where(span > 0, lo + (kept - smin) / span.clamp_min(1e-30) * (hi - lo), (lo + hi) / 2);
  }
  BratsVolume v;
  v.name = k.name;
  v.labelled = labelled;
  v.image = kept.to(torch::kHalf);
  v.brain = brain.index_select(0, index).to(torch::kUInt8);
  if (labelled) v.mask = lesion.index_select(0, index).to(torch::kUInt8);
  const int64_t* z = index.data_ptr<int64_t>();
  v.z.assign(z, z + index.numel());
  return v;
}

// The clip: clip_percentile (default 99.5, GVS's) or clip_max, not both; a null one is off (a null
// key is kept by the config, so it differs from an absent one; has() reads it either way).
void brats_clip(const Config& c, BratsPreprocess& p) {
  const auto keys = c.keys();
  const auto present = [&](const char* key) { return std::find(keys.begin(), keys.end(), key) != keys.end(); };
  p.clip_max = c.has("clip_max") ? std::optional<double>(c.get_in_range<double>("clip_max", Range::above(0))) : std::nullopt;
  p.clip_percentile = c.has("clip_percentile")
                          ? std::optional<double>(c.get_in_range<double>("clip_percentile", Range::closed_open(0, 100)))
                      : present("clip_percentile") || p.clip_max ? std::nullopt
                                                                 : std::optional<double>(99.5);
  if (p.clip_max && c.has("clip_percentile"))
    fail("{}: {}: give clip_percentile or clip_max, not both", c.where("clip_max"), c.full_key("clip_max"));
}

// slice_range: [lo, hi] with lo < hi, or absent.
std::optional<std::pair<double, double>> brats_slice_range(const Config& c) {
  if (!c.has("slice_range")) return std::nullopt;
  const auto r = c.get<std::vector<double>>("slice_range");
  if (r.size() != 2 || !(r[0] < r[1]) || !std::isfinite(r[0]) || !std::isfinite(r[1]))
    fail("{}: {}: expected [lo, hi] with lo < hi, e.g. [-1, 1]", c.where("slice_range"), c.full_key("slice_range"));
  return std::make_pair(r[0], r[1]);
}

// Whether `split` keeps the lesion slices (else the brain slices).
bool brats_lesion_slices(const Config& c, const std::string& split) {
  std::string rule = split == "train" ? "lesion" : "brain";
  std::string key = "slices";
  if (c.has("slices")) {
    const Config node = c.at("slices");
    if (node.is_map()) {
      for (const auto& name : node.keys()) node.get<std::string>(name);  // every entry read, so none is a typo
      key = "slices." + split;
      rule = node.get<std::string>(split, rule);
    } else {
      rule = c.get<std::string>("slices");
    }
  }
  if (rule != "lesion" && rule != "brain") fail("{}: {}: expected lesion or brain, got \"{}\"", c.where(key), c.full_key(key), rule);
  return rule == "lesion";
}

class Brats : public Dataset {
 public:
  Brats(const Config& c, const std::string& split) {
    const auto start = std::chrono::steady_clock::now();
    const fs::path root = c.get<std::string>("root");
    const auto grades = c.get<std::vector<std::string>>("grades", {"HGG"});
    BratsPreprocess p;
    p.modality = c.get<std::string>("modality", "t2");
    if (std::find(kModalities.begin(), kModalities.end(), p.modality) == kModalities.end())
      fail("{}: {}: expected flair, t1, t1ce or t2, got \"{}\"", c.where("modality"), c.full_key("modality"), p.modality);
    brats_clip(c, p);
    p.slice_range = brats_slice_range(c);
    p.lesion_slices = brats_lesion_slices(c, split);
    const double labelled_fraction = c.get_in_range<double>("labelled_fraction", 1.0, Range::closed(0, 1));
    const uint64_t labelled_seed = c.get<uint64_t>("labelled_seed", 0);

    const auto all = brats_find_cases(c, root, grades);
    const auto splits = brats_assign_splits(c, all, root);
    const auto found = splits.find(split);
    if (found == splits.end()) {
      std::vector<std::string> names;
      for (const auto& [name, cases] : splits) names.push_back(name);
      fail("{}: brats: no split \"{}\" (this config has {})", c.where(), split, join(names, ", "));
    }
    const std::vector<BratsCase>& cases = found->second;
    if (cases.empty()) fail("{}: brats: the {} split has no cases (of {} under {})", c.where(), split, all.size(), root.string());

    // SMILE's labelled training cases: the first share of them in the order of labelled_seed.
    std::set<std::string> unlabelled;
    if (split == "train") {
      std::vector<BratsCase> order = cases;
      brats_sort_by_hash(order, labelled_seed);
      const auto n = static_cast<int64_t>(order.size());
      const int64_t keep = labelled_fraction > 0 ? std::clamp<int64_t>(std::llround(labelled_fraction * static_cast<double>(n)), 1, n) : 0;
      for (int64_t i = keep; i < n; ++i) unlabelled.insert(order[static_cast<size_t>(i)].name);
    }

    volumes_ = load(cases, p, unlabelled, split);
    std::set<std::string> sizes;
    int64_t bytes = 0, empty = 0;
    for (size_t v = 0; v < volumes_.size(); ++v) {
      const BratsVolume& vol = volumes_[v];
      if (vol.z.empty()) ++empty;
      for (size_t k = 0; k < vol.z.size(); ++k) slices_.push_back({static_cast<int32_t>(v), static_cast<int32_t>(k)});
      if (!vol.z.empty()) sizes.insert(fmt::format("{}x{}", vol.image.size(1), vol.image.size(2)));
      for (const auto* t : {&vol.image, &vol.mask, &vol.brain})
        if (t->defined()) bytes += t->numel() * t->element_size();
    }
    const char* rule = p.lesion_slices ? "lesion" : "brain";
    if (slices_.empty()) fail("{}: brats: no {} slice in the {} cases of the {} split", c.where(), rule, cases.size(), split);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("brats {}: {} case(s) ({} labelled{}), {} {} slices of {} {}, {:.1f} MB in memory, read in {:.1f} s", split,
              cases.size(), cases.size() - unlabelled.size(), empty ? fmt::format(", {} without a {} slice", empty, rule) : "",
              slices_.size(), rule, join(std::vector<std::string>(sizes.begin(), sizes.end()), ", "), p.modality, static_cast<double>(bytes) / 1e6, seconds);
  }

  int64_t size() const override { return static_cast<int64_t>(slices_.size()); }

  Sample get(int64_t index, uint64_t) const override {
    const BratsSlice& s = slices_.at(static_cast<size_t>(index));
    const BratsVolume& v = volumes_[static_cast<size_t>(s.volume)];
    Sample out;
    out.id = fmt::format("{}/{:03d}", v.name, v.z[static_cast<size_t>(s.k)]);
    out.fields["image"] = v.image[s.k].to(torch::kFloat).unsqueeze(0);
    out.fields["brain_mask"] = v.brain[s.k].to(torch::kFloat).unsqueeze(0);
    out.fields["mask"] = v.labelled ? v.mask[s.k].to(torch::kFloat).unsqueeze(0) : torch::zeros_like(out.fields["brain_mask"]);
    out.fields["labelled"] = torch::tensor(v.labelled ? 1.0f : 0.0f);
    return out;
  }

 private:
  struct BratsSlice {
    int32_t volume, k;  // volumes_[volume], its k-th kept slice
  };

  // Reads the cases on a few threads (decompressing and decoding the volumes is most of the time),
  // with a progress line about every 10 % for large splits; the first failing case's error is raised.
  static std::vector<BratsVolume> load(const std::vector<BratsCase>& cases, const BratsPreprocess& p,
                                       const std::set<std::string>& unlabelled, const std::string& split) {
    const size_t n = cases.size();
    std::vector<BratsVolume> volumes(n);
    std::vector<std::string> errors(n);
    std::atomic<size_t> next{0};
    std::mutex progress;
    size_t done = 0, reported = 0;
    auto work = [&] {
      for (size_t i; (i = next++) < n;) {
        try {
          volumes[i] = brats_load_case(cases[i], p, !unlabelled.count(cases[i].name));
        } catch (const Error& e) {
          errors[i] = e.what();
        } catch (const std::exception& e) {
          errors[i] = fmt::format("{}: {}", cases[i].dir.string(), e.what());
        }
        std::lock_guard lock(progress);
        ++done;
        if (n >= 10 && done < n && done * 10 / n > reported) {
          reported = done * 10 / n;
          log::info("brats {}: {}/{} cases read", split, done, n);
        }
      }
    };
    const size_t threads = std::min<size_t>({4, std::max(1u, std::thread::hardware_concurrency()), n});
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
    const auto failed = std::count_if(errors.begin(), errors.end(), [](const std::string& e) { return !e.empty(); });
    for (const auto& e : errors)
      if (!e.empty()) fail("{}{}", e, failed > 1 ? fmt::format(" (and {} more case(s) failed)", failed - 1) : "");
    return volumes;
  }

  std::vector<BratsVolume> volumes_;
  std::vector<BratsSlice> slices_;
};

FACET_REGISTER(dataset_registry(), "brats",
               "BraTS MRI (NIfTI, HGG/LGG case folders): axial slices of one modality, GVS's z-score, tumour "
               "masks, SMILE's labelled share",
               [](const Config& c, const std::string& split) { return std::make_shared<Brats>(c, split); });

}  // namespace
}  // namespace facet::data::brats
