// BraTS: the reader on synthetic cases in the published layout (facet data synth brats): GVS's
// preprocessing against a computation by hand, slice selection, splits, SMILE's labelled share, the
// HGG/LGG folders, and errors that name the case folder and the file.
#include "core/config.h"
#include "data/dataset.h"
#include "data/image/nifti.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace facet::data::test_brats {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test_support::message_of;

// A synthetic BraTS under a fresh folder: `cases` cases of 32 x 32 x 12 voxels, the last `lgg` in LGG/.
fs::path synth(const std::string& name, int cases, int lgg = 0) {
  const fs::path root = test_support::scratch_path("facet_test_brats", name);
  synth_registry().create(
      Config::parse(fmt::format("{{name: brats, cases: {}, lgg: {}, size: 32, slices: 12, seed: 3}}", cases, lgg)), root);
  return root;
}

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& options, const std::string& split = "train") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: brats, root: {}{}}}", root.string(), options)), split);
}

std::string case_of(const Sample& s) { return s.id.substr(0, s.id.find('/')); }

// Case name -> its samples' count.
std::map<std::string, int64_t> cases_of(const Dataset& d) {
  std::map<std::string, int64_t> out;
  for (int64_t i = 0; i < d.size(); ++i) ++out[case_of(d.get(i, 0))];
  return out;
}

fs::path case_file(const fs::path& root, const std::string& grade, int index, const std::string& what) {
  const std::string name = fmt::format("BraTS19_SYN_{:03d}_1", index);
  return root / grade / name / fmt::format("{}_{}.nii.gz", name, what);
}

// Per case: the indices of the slices with any voxel > 0 and with any seg > 0, from the files.
struct SliceSets {
  std::set<int64_t> brain, lesion;
};
SliceSets slice_sets(const fs::path& root, int index) {
  const auto t2 = image::read_nifti(case_file(root, "HGG", index, "t2")).data;
  const auto seg = image::read_nifti(case_file(root, "HGG", index, "seg")).data;
  SliceSets s;
  for (int64_t z = 0; z < t2.size(0); ++z) {
    if ((t2[z] > 0).any().item<bool>()) s.brain.insert(z);
    if ((seg[z] > 0).any().item<bool>()) s.lesion.insert(z);
  }
  return s;
}

TEST(Brats, PreprocessingIsGvsByHand) {
  const fs::path root = synth("preprocess", 3);
  // clip_max 1200: below the synthetic tumour's T2 (1100-1600), so the clip shows.
  const auto d = open(root, ", split: {train: 1.0}, slices: brain, clip_max: 1200");
  // By hand, in double, one voxel at a time: clip, brain = > 0, mean and sample std over the brain.
  const torch::Tensor raw = image::read_nifti(case_file(root, "HGG", 2, "t2")).data;
  const torch::Tensor seg = image::read_nifti(case_file(root, "HGG", 2, "seg")).data;
  const float* v = raw.data_ptr<float>();
  double sum = 0, sq = 0;
  int64_t n = 0, clipped = 0;
  for (int64_t i = 0; i < raw.numel(); ++i) {
    const double x = std::min<double>(v[i], 1200);
    clipped += v[i] > 1200;
    if (x > 0) sum += x, ++n;
  }
  const double mean = sum / static_cast<double>(n);
  for (int64_t i = 0; i < raw.numel(); ++i)
    if (v[i] > 0) sq += (std::min<double>(v[i], 1200) - mean) * (std::min<double>(v[i], 1200) - mean);
  const double sd = std::sqrt(sq / static_cast<double>(n - 1));
  ASSERT_GT(clipped, 0);
  const SliceSets sets = slice_sets(root, 2);
  int64_t seen = 0;
  for (int64_t i = 0; i < d->size(); ++i) {
    const Sample s = d->get(i, 0);
    if (case_of(s) != "BraTS19_SYN_002_1") continue;
    ++seen;
    const int64_t z = std::stoll(s.id.substr(s.id.find('/') + 1));
    EXPECT_EQ(s.id, fmt::format("BraTS19_SYN_002_1/{:03d}", z));
    const torch::Tensor image = s.fields.at("image");
    ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 32, 32}));
    const torch::Tensor x = raw[z].to(torch::kDouble).clamp_max(1200), brain = raw[z] > 0;
    const torch::Tensor expected = torch::where(brain, (x - mean) / sd, 0.0).to(torch::kFloat).unsqueeze(0);
    // float16 storage: within half a unit in the last place of a half (2^-11 relative).
    EXPECT_TRUE(torch::allclose(image, expected, 1e-3, 1e-3)) << s.id << ": " << (image - expected).abs().max().item<float>();
    EXPECT_TRUE(torch::equal(image.masked_select(~brain.unsqueeze(0)), torch::zeros({(~brain).sum().item<int64_t>()})));
    EXPECT_TRUE(torch::equal(s.fields.at("brain_mask"), brain.to(torch::kFloat).unsqueeze(0))) << s.id;
    EXPECT_TRUE(torch::equal(s.fields.at("mask"), (seg[z] > 0).to(torch::kFloat).unsqueeze(0))) << s.id;
    EXPECT_EQ(s.fields.at("labelled").item<float>(), 1.0f);
    EXPECT_EQ(s.fields.at("labelled").dim(), 0);
  }
  EXPECT_EQ(seen, static_cast<int64_t>(sets.brain.size()));
  // A null clip_percentile with no clip_max turns the clip off (the brightest voxel grows).
  auto brightest = [&](const std::string& options) {
    const auto e = open(root, ", split: {train: 1.0}, slices: lesion" + options);
    float top = -1e9f;
    for (int64_t i = 0; i < e->size(); ++i) top = std::max(top, e->get(i, 0).fields.at("image").max().item<float>());
    return top;
  };
  EXPECT_LT(brightest(", clip_max: 1200"), brightest(", clip_percentile: null"));
  // By default each case is clipped at GVS's find995: a histogram of the voxels' whole parts
  // (background included), accumulated from 0 until more than 99.5 % of the voxels are counted.
  std::map<int64_t, int64_t> histogram;
  for (int64_t i = 0; i < raw.numel(); ++i) ++histogram[static_cast<int64_t>(v[i])];
  int64_t cumulative = 0, find995 = 0;
  for (const auto& [value, count] : histogram) {
    cumulative += count;
    if (value >= 1 && static_cast<double>(cumulative) / static_cast<double>(raw.numel()) > 0.995) {
      find995 = value;
      break;
    }
  }
  ASSERT_GT(find995, 0);
  const auto one_case = [&](const std::string& options) {  // case 2's slices, as one tensor
    const auto e = open(root, ", split: {train: 1.0}, slices: brain" + options);
    std::vector<torch::Tensor> images;
    for (int64_t i = 0; i < e->size(); ++i)
      if (case_of(e->get(i, 0)) == "BraTS19_SYN_002_1") images.push_back(e->get(i, 0).fields.at("image"));
    return torch::cat(images);
  };
  EXPECT_TRUE(torch::equal(one_case(""), one_case(fmt::format(", clip_max: {}", find995))));
  EXPECT_FALSE(torch::equal(one_case(""), one_case(", clip_percentile: null")));
  // slice_range: each slice's min..max (background included) onto [-1, 1], as GVS's BrainDataset.
  const torch::Tensor z_scores = one_case(""), ranged = one_case(", slice_range: [-1, 1]");
  for (int64_t k = 0; k < z_scores.size(0); ++k) {
    const torch::Tensor s = z_scores[k].to(torch::kDouble);
    const torch::Tensor expected = ((s - s.min()) / (s.max() - s.min()) - 0.5) * 2;
    EXPECT_TRUE(torch::allclose(ranged[k].to(torch::kDouble), expected, 2e-3, 2e-3)) << k;
    EXPECT_NEAR(ranged[k].min().item<double>(), -1, 1e-3);
    EXPECT_NEAR(ranged[k].max().item<double>(), 1, 1e-3);
  }
  EXPECT_THAT(message_of([&] { open(root, ", clip_max: 1200, clip_percentile: 99"); }), HasSubstr("not both"));
  EXPECT_THAT(message_of([&] { open(root, ", slice_range: [1, -1]"); }), HasSubstr("slice_range: expected [lo, hi]"));
}

TEST(Brats, LesionAndBrainSlices) {
  const fs::path root = synth("slices", 4);
  int64_t brain = 0, lesion = 0, brain_only = 0;
  for (int c = 1; c <= 4; ++c) {
    const SliceSets s = slice_sets(root, c);
    brain += static_cast<int64_t>(s.brain.size());
    lesion += static_cast<int64_t>(s.lesion.size());
    for (int64_t z : s.lesion) EXPECT_TRUE(s.brain.count(z)) << "tumour outside the brain, case " << c;
    brain_only += static_cast<int64_t>(s.brain.size() - s.lesion.size());
    EXPECT_LT(s.brain.size(), 12u) << "the top and bottom slices hold no brain";
  }
  EXPECT_GT(lesion, 0);
  EXPECT_GT(brain_only, 0);
  EXPECT_EQ(open(root, ", split: {train: 1.0}, slices: brain")->size(), brain);
  EXPECT_EQ(open(root, ", split: {train: 1.0}, slices: lesion")->size(), lesion);
  EXPECT_EQ(open(root, ", split: {train: 1.0}")->size(), lesion);  // train: lesion slices by default
  EXPECT_EQ(open(root, ", split: {val: 1.0}", "val")->size(), brain);  // other splits: brain slices
  EXPECT_EQ(open(root, ", split: {val: 1.0}, slices: {train: brain, val: lesion}", "val")->size(), lesion);
  // Every lesion slice shows tumour in its mask.
  const auto d = open(root, ", split: {train: 1.0}");
  for (int64_t i = 0; i < d->size(); ++i) EXPECT_GT(d->get(i, 0).fields.at("mask").sum().item<float>(), 0) << d->get(i, 0).id;
}

TEST(Brats, SplitsAreDisjointDeterministicAndFromLists) {
  const fs::path root = synth("split", 10);
  std::map<std::string, std::map<std::string, int64_t>> by_split;
  std::set<std::string> all;
  for (const std::string split : {"train", "val", "test"}) {
    by_split[split] = cases_of(*open(root, "", split));
    for (const auto& [name, count] : by_split[split]) EXPECT_TRUE(all.insert(name).second) << name << " in two splits";
  }
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(by_split["train"].size(), 8u);  // 0.8 / 0.1 / 0.1 of 10
  EXPECT_EQ(by_split["val"].size(), 1u);
  EXPECT_EQ(by_split["test"].size(), 1u);
  EXPECT_EQ(cases_of(*open(root, "", "val")), by_split["val"]);  // the same again
  bool moved = false;
  for (int seed = 1; seed <= 5 && !moved; ++seed) moved = cases_of(*open(root, fmt::format(", split_seed: {}", seed), "val")) != by_split["val"];
  EXPECT_TRUE(moved) << "split_seed changes the assignment";
  // Small counts: every share > 0 gets a case.
  const fs::path small = synth("split_small", 4);
  EXPECT_EQ(cases_of(*open(small, "", "test")).size(), 1u);
  EXPECT_EQ(cases_of(*open(small, "", "train")).size(), 2u);

  // Case lists: exactly the names given, each in one list.
  const fs::path lists = test_support::scratch_dir("facet_test_brats", "lists");
  std::ofstream(lists / "train.txt") << "# training cases\nBraTS19_SYN_003_1\n\n  BraTS19_SYN_001_1  \r\n";
  std::ofstream(lists / "val.txt") << "BraTS19_SYN_007_1\n";
  const std::string option = fmt::format(", cases: {{train: {}, val: {}}}", (lists / "train.txt").string(), (lists / "val.txt").string());
  const auto train = cases_of(*open(root, option));
  EXPECT_EQ(train.size(), 2u);
  EXPECT_TRUE(train.count("BraTS19_SYN_001_1") && train.count("BraTS19_SYN_003_1"));
  EXPECT_EQ(cases_of(*open(root, option, "val")).begin()->first, "BraTS19_SYN_007_1");
  EXPECT_THAT(message_of([&] { open(root, option, "test"); }), HasSubstr("brats: no split \"test\" (this config has train, val)"));
  std::ofstream(lists / "val.txt") << "BraTS19_SYN_003_1\n";
  EXPECT_THAT(message_of([&] { open(root, option); }), HasSubstr("val.txt:1: case BraTS19_SYN_003_1 is already in the train list"));
  std::ofstream(lists / "val.txt") << "BraTS19_SYN_004_1\nBraTS19_SYN_099_1\n";
  EXPECT_THAT(message_of([&] { open(root, option); }), HasSubstr("val.txt:2: no case folder BraTS19_SYN_099_1 under"));
  EXPECT_THAT(message_of([&] { open(root, option + ", split: {train: 1.0}"); }), HasSubstr("set either split (shares) or cases"));
  EXPECT_THAT(message_of([&] { open(root, ", split: {train: 1.0, val: 0.0}", "val"); }),
              HasSubstr("brats: the val split has no cases (of 10 under"));
  EXPECT_THAT(message_of([&] { open(root, ", split: {train: 0.5, val: 0.4}"); }), HasSubstr("the shares add up to 0.9, not 1"));
}

TEST(Brats, LabelledFractionKeepsMasksOfAShareOfTrainingCases) {
  const fs::path root = synth("labelled", 8);
  const std::string split = ", split: {train: 0.5, val: 0.5}, labelled_fraction: ";
  auto labelled_cases = [&](const std::string& fraction, const std::string& which) {
    const auto d = open(root, split + fraction, which);
    std::map<std::string, bool> labelled;  // case -> labelled
    for (int64_t i = 0; i < d->size(); ++i) {
      const Sample s = d->get(i, 0);
      const bool l = s.fields.at("labelled").item<float>() == 1.0f;
      const auto [it, added] = labelled.emplace(case_of(s), l);
      EXPECT_EQ(it->second, l) << "a case is labelled or not as a whole: " << s.id;
      if (!l) {
        EXPECT_EQ(s.fields.at("mask").abs().sum().item<float>(), 0.0f) << s.id;
        EXPECT_EQ(s.fields.at("labelled").item<float>(), 0.0f);
      }
      EXPECT_GT(s.fields.at("brain_mask").sum().item<float>(), 0) << "unlabelled cases keep their brain mask";
    }
    int64_t n = 0;
    for (const auto& [name, l] : labelled) n += l;
    return std::make_pair(n, static_cast<int64_t>(labelled.size()));
  };
  EXPECT_EQ(labelled_cases("0.5", "train"), std::make_pair(int64_t{2}, int64_t{4}));
  EXPECT_EQ(labelled_cases("0.01", "train"), std::make_pair(int64_t{1}, int64_t{4}));  // at least one
  EXPECT_EQ(labelled_cases("0", "train"), std::make_pair(int64_t{0}, int64_t{4}));
  EXPECT_EQ(labelled_cases("1.0", "train"), std::make_pair(int64_t{4}, int64_t{4}));
  EXPECT_EQ(labelled_cases("0.5", "val"), std::make_pair(int64_t{4}, int64_t{4}));  // evaluation: always labelled
  // The same cases each time.
  const auto d = open(root, split + "0.5");
  const auto again = open(root, split + "0.5");
  for (int64_t i = 0; i < d->size(); ++i)
    EXPECT_EQ(d->get(i, 0).fields.at("labelled").item<float>(), again->get(i, 0).fields.at("labelled").item<float>());
}

TEST(Brats, PublishedLayoutWithBothGrades) {
  const fs::path root = synth("grades", 6, 2);
  ASSERT_TRUE(fs::is_directory(root / "LGG" / "BraTS19_SYN_006_1"));
  const std::string all = ", split: {train: 1.0}, slices: brain";
  EXPECT_EQ(cases_of(*open(root, all)).size(), 4u);  // grades: [HGG] by default, as GVS
  const auto both = cases_of(*open(root, all + ", grades: [HGG, LGG]"));
  EXPECT_EQ(both.size(), 6u);
  EXPECT_TRUE(both.count("BraTS19_SYN_005_1") && both.count("BraTS19_SYN_001_1"));
  EXPECT_EQ(cases_of(*open(root, all + ", grades: [LGG]")).size(), 2u);
  EXPECT_EQ(cases_of(*open(root / "LGG", all)).size(), 2u);  // a folder of case folders
  const fs::path hgg_only = synth("grades_hgg", 3);
  EXPECT_THAT(message_of([&] { open(hgg_only, all + ", grades: [HGG, LGG]"); }),
              HasSubstr(fmt::format("{} has no LGG folder (found: HGG)", hgg_only.string())));
  EXPECT_THAT(message_of([&] { open(hgg_only, all + ", grades: [LGG]"); }), HasSubstr("has no LGG folder but has HGG"));
}

TEST(Brats, BadCasesAreErrorsNamingTheFile) {
  const fs::path root = synth("bad", 3);
  const std::string all = ", split: {train: 1.0}";
  fs::remove(case_file(root, "HGG", 2, "t2"));
  EXPECT_THAT(message_of([&] { open(root, all); }),
              HasSubstr("HGG/BraTS19_SYN_002_1: case BraTS19_SYN_002_1 has no t2 volume: missing BraTS19_SYN_002_1_t2.nii.gz"));
  EXPECT_NO_THROW(open(root, all + ", modality: flair"));
  image::write_nifti(case_file(root, "HGG", 3, "seg"), torch::zeros({12, 32, 31}), {1, 1, 1}, image::kNiftiUint8);
  EXPECT_THAT(message_of([&] { open(root, all + ", modality: flair"); }),
              HasSubstr("BraTS19_SYN_003_1_seg.nii.gz: the seg volume is 12x32x31 voxels (z x y x x), the flair volume "
                        "BraTS19_SYN_003_1_flair.nii.gz is 12x32x32"));
  { std::ofstream(case_file(root, "HGG", 1, "flair")) << "not a volume"; }
  EXPECT_THAT(message_of([&] { open(root, all + ", modality: flair"); }),
              HasSubstr("BraTS19_SYN_001_1_flair.nii.gz: not a NIfTI file"));
  EXPECT_THAT(message_of([&] { open(root, all + ", modality: t3"); }), HasSubstr("modality: expected flair, t1, t1ce or t2, got \"t3\""));
  EXPECT_THAT(message_of([&] { open(root, all + ", slices: tumour"); }), HasSubstr("slices: expected lesion or brain, got \"tumour\""));
  const fs::path empty = test_support::scratch_dir("facet_test_brats", "empty");
  EXPECT_THAT(message_of([&] { open(empty, all); }), HasSubstr("no case folders under " + empty.string()));
}

}  // namespace
}  // namespace facet::data::test_brats
