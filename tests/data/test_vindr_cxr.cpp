// VinDr-CXR: the reader against hand-written CSVs (reader policies, votes, box fusion, preprocessed
// PNG copies, errors naming file:line) and against the synthetic writer's DICOM release.
#include "core/config.h"
#include "data/dataset.h"
#include "data/image/dicom.h"
#include "data/synth.h"
#include "data/vindr_cxr/vindr_cxr.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace facet::data::test_vindr_cxr {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_vindr", name); }

using test_support::message_of;

// The `data` node of a config: name, root, then `extra` (lines of "key: value").
std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  std::string yaml = "data:\n  name: vindr_cxr\n  root: " + root.string() + "\n";
  std::istringstream lines(extra);
  for (std::string line; std::getline(lines, line);) yaml += "  " + line + "\n";
  return dataset_registry().create(Config::parse(yaml, "test.yaml").at("data"), split);
}

std::string header() {
  std::string h;
  for (auto l : vindr_cxr::kLocalLabels) h += "," + (std::string(l).find(',') != std::string::npos ? "\"" + std::string(l) + "\"" : std::string(l));
  return h;
}

// A 28-column 0/1 row with ones at `positive` (indices into the 28 labels).
std::string row(std::initializer_list<int> positive) {
  std::array<int, 28> v{};
  for (int i : positive) v[static_cast<size_t>(i)] = 1;
  std::string out;
  for (int x : v) out += fmt::format(",{}", x);
  return out;
}

// Two train images read by R1, R2, R3 (100 x 80 DICOMs), and one test image.
fs::path write_small_release(const fs::path& root) {
  fs::create_directories(root / "annotations");
  fs::create_directories(root / "train");
  fs::create_directories(root / "test");
  for (const auto& [split, id] : std::vector<std::pair<std::string, std::string>>{{"train", "aaa"}, {"train", "bbb"}, {"test", "ccc"}})
    image::write_dicom(root / split / (id + ".dicom"), torch::arange(80 * 100, torch::kInt32).view({80, 100}) % 4096);
  const std::string globals = ",COPD,Lung tumor,Pneumonia,Tuberculosis,Other diseases,No finding";
  // aaa: all three see Nodule/Mass (15) with overlapping boxes; only R3 sees Cardiomegaly (3) and a
  // second, far-away nodule. bbb: nobody sees anything except R2, who says Pneumonia (24).
  std::ofstream(root / "annotations/image_labels_train.csv")
      << "image_id,rad_id" << header() << globals << "\n"
      << "aaa,R1" << row({15}) << "\naaa,R2" << row({15}) << "\naaa,R3" << row({15, 3}) << "\n"
      << "bbb,R1" << row({27}) << "\nbbb,R2" << row({24}) << "\nbbb,R3" << row({27}) << "\n";
  std::ofstream(root / "annotations/annotations_train.csv")
      << "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
      << "aaa,R1,Nodule/Mass,10,10,30,30\n"
      << "aaa,R2,Nodule/Mass,12,12,32,32\n"
      << "aaa,R2,Nodule/Mass,12.5,12,32,32\n"  // R2's near-duplicate counts once
      << "aaa,R3,Nodule/Mass,14,14,34,34\n"
      << "aaa,R3,Nodule/Mass,70,50,80,60\n"
      << "aaa,R3,Cardiomegaly,30,40,70,70\n"
      << "bbb,R1,No finding,,,,\nbbb,R2,No finding,,,,\nbbb,R3,No finding,,,,\n";
  std::ofstream(root / "annotations/image_labels_test.csv")
      << "image_id" << header() << ",COPD,Lung tumor,Pneumonia,Tuberculosis,Other disease,No finding\n"
      << "ccc" << row({0, 23}) << "\n";
  std::ofstream(root / "annotations/annotations_test.csv")
      << "image_id,class_name,x_min,y_min,x_max,y_max\nccc,Aortic enlargement,50,5,60,15\n";
  return root;
}

TEST(VinDrCxr, ReaderPoliciesVotesAndFusion) {
  const fs::path root = write_small_release(fresh_dir("policies"));
  // union: one sample per image, every reader's boxes (R2's duplicate included), labels by "any".
  auto u = open(root, "train");
  ASSERT_EQ(u->size(), 2);
  EXPECT_EQ(u->label_names().size(), 28u);
  EXPECT_EQ(u->label_names()[26], "Other diseases");
  Sample a = u->get(0, 0);
  EXPECT_EQ(a.fields["image"].sizes(), (std::vector<int64_t>{1, 80, 100}));
  EXPECT_EQ(a.ragged["boxes"].size(0), 6);
  EXPECT_EQ(a.fields["labels"][15].item<float>(), 1);
  EXPECT_EQ(a.fields["labels"][3].item<float>(), 1);
  EXPECT_EQ(a.fields["labels"][27].item<float>(), 0);
  // bbb: R2's Pneumonia wins under "any", so "No finding" is recomputed to 0.
  Sample b = u->get(1, 0);
  EXPECT_EQ(b.fields["labels"][24].item<float>(), 1);
  EXPECT_EQ(b.fields["labels"][27].item<float>(), 0);
  // majority: Cardiomegaly (1 of 3) and Pneumonia (1 of 3) drop out; bbb becomes normal.
  auto m = open(root, "train", "label_vote: majority");
  EXPECT_EQ(m->get(0, 0).fields["labels"][3].item<float>(), 0);
  EXPECT_EQ(m->get(0, 0).fields["labels"][15].item<float>(), 1);
  EXPECT_EQ(m->get(1, 0).fields["labels"][27].item<float>(), 1);
  // each: one sample per reader with that reader's boxes.
  auto e = open(root, "train", "readers: each");
  ASSERT_EQ(e->size(), 6);
  EXPECT_EQ(e->get(0, 0).ragged["boxes"].size(0), 1);
  EXPECT_EQ(e->get(2, 0).ragged["boxes"].size(0), 3);
  EXPECT_EQ(e->get(2, 0).ragged["box_readers"][0].item<int64_t>(), 3);
  EXPECT_EQ(e->get(2, 0).ragged.keys(), (std::vector<std::string>{"box_labels", "box_readers", "boxes"}));
  EXPECT_NO_THROW(check_per_box_fields(e->get(2, 0), "test"));
  // fused: the three overlapping nodules become their mean; the far nodule and the heart stay.
  auto f = open(root, "train", "readers: fused");
  Sample fa = f->get(0, 0);
  ASSERT_EQ(fa.ragged["boxes"].size(0), 3);
  const torch::Tensor labels = fa.ragged["box_labels"];
  const torch::Tensor boxes = fa.ragged["boxes"];
  int nodules = 0;
  for (int64_t i = 0; i < 3; ++i) {
    if (labels[i].item<int64_t>() != 15) continue;
    ++nodules;
    if (boxes[i][0].item<float>() < 50) {
      EXPECT_TRUE(torch::allclose(boxes[i], torch::tensor({12.f, 12.f, 32.f, 32.f})));
    }
  }
  EXPECT_EQ(nodules, 2);
  // test: the consensus, with the "Other disease" spelling of the test file.
  auto t = open(root, "test");
  ASSERT_EQ(t->size(), 1);
  Sample c = t->get(0, 0);
  EXPECT_EQ(c.fields["labels"][0].item<float>(), 1);
  EXPECT_EQ(c.fields["labels"][23].item<float>(), 1);
  EXPECT_TRUE(torch::equal(c.ragged["boxes"], torch::tensor({{50.f, 5.f, 60.f, 15.f}})));
  EXPECT_EQ(c.ragged["box_readers"][0].item<int64_t>(), 0);
  // image_size: boxes follow the resize per axis.
  Sample r = open(root, "test", "image_size: 40")->get(0, 0);
  EXPECT_EQ(r.fields["image"].sizes(), (std::vector<int64_t>{1, 40, 40}));
  EXPECT_TRUE(torch::allclose(r.ragged["boxes"], torch::tensor({{20.f, 2.5f, 24.f, 7.5f}})));
}

TEST(VinDrCxr, PreprocessedPngCopiesScaleBoxesFromTheOriginalGrid) {
  const fs::path root = write_small_release(fresh_dir("png"));
  fs::create_directories(root / "png/test");
  cv::imwrite((root / "png/test/ccc.png").string(), cv::Mat(40, 50, CV_8UC1, cv::Scalar(7)));
  std::ofstream(root / "sizes.csv") << "image_id,dim0,dim1\nccc,80,100\n";
  const std::string png = "image_format: png\nimage_dir: " + (root / "png").string() + "\n";
  Sample s = open(root, "test", png + "original_sizes: " + (root / "sizes.csv").string())->get(0, 0);
  EXPECT_EQ(s.fields["image"].sizes(), (std::vector<int64_t>{1, 40, 50}));
  EXPECT_EQ(s.fields["image"].max().item<float>(), 7);
  EXPECT_TRUE(torch::allclose(s.ragged["boxes"], torch::tensor({{25.f, 2.5f, 30.f, 7.5f}})));
  EXPECT_THAT(message_of([&] { open(root, "test", png); }), HasSubstr("give data.original_sizes"));
  Sample same = open(root, "test", png + "boxes_in_image_pixels: true")->get(0, 0);
  EXPECT_TRUE(torch::equal(same.ragged["boxes"], torch::tensor({{50.f, 5.f, 60.f, 15.f}})));
}

TEST(VinDrCxr, ValFractionPartitionsTheTrainImages) {
  const fs::path root = fresh_dir("val");
  synth_registry().create(Config::parse("name: vindr-cxr\ntrain: 40\ntest: 2\nsize: 64", "synth"), root);
  const int64_t all = open(root, "train")->size();
  const auto train = open(root, "train", "val_fraction: 0.25"), val = open(root, "val", "val_fraction: 0.25");
  EXPECT_EQ(train->size() + val->size(), all);
  EXPECT_GT(val->size(), 3);
  EXPECT_LT(val->size(), 20);
  std::set<std::string> ids;
  for (int64_t i = 0; i < train->size(); ++i) ids.insert(train->get(i, 0).id);
  for (int64_t i = 0; i < val->size(); ++i) EXPECT_EQ(ids.count(val->get(i, 0).id), 0u);
  EXPECT_THAT(message_of([&] { open(root, "val"); }), HasSubstr("no official val split"));
}

TEST(VinDrCxr, SyntheticReleaseHasThePublishedLayoutAndLearnableContent) {
  const fs::path root = fresh_dir("synth");
  const SynthResult r = synth_registry().create(Config::parse("name: vindr-cxr\ntrain: 12\ntest: 6\nsize: 128", "synth"), root);
  EXPECT_THAT(r.summary, HasSubstr("12 train"));
  for (const char* f : {"annotations/annotations_train.csv", "annotations/annotations_test.csv",
                        "annotations/image_labels_train.csv", "annotations/image_labels_test.csv"})
    EXPECT_TRUE(fs::exists(root / f)) << f;
  std::ifstream labels(root / "annotations/image_labels_test.csv");
  std::string first;
  std::getline(labels, first);
  EXPECT_THAT(first, HasSubstr(",Other disease,No finding"));
  EXPECT_THAT(first, HasSubstr(",Nodule/Mass,"));
  int monochrome1 = 0;
  for (const auto& entry : fs::directory_iterator(root / "train")) {
    EXPECT_EQ(entry.path().extension(), ".dicom");
    EXPECT_EQ(entry.path().stem().string().size(), 32u);
    monochrome1 += image::read_dicom(entry.path(), {.invert_monochrome1 = false}).photometric == "MONOCHROME1";
  }
  EXPECT_EQ(monochrome1, 4);
  auto train = open(root, "train", "readers: each");
  EXPECT_EQ(train->size(), 36);
  auto test = open(root, "test");
  for (int64_t i = 0; i < test->size(); ++i) {
    Sample s = test->get(i, 0);
    const torch::Tensor im = s.fields["image"][0];
    EXPECT_NEAR(im.min().item<float>(), 0, 1e-3);
    EXPECT_NEAR(im.max().item<float>(), 255, 1e-3);
    // Whatever the file's polarity, lungs come out darker than the spine.
    const float lung = im.slice(0, 45, 70).slice(1, 32, 44).mean().item<float>();
    const float spine = im.slice(0, 40, 90).slice(1, 62, 66).mean().item<float>();
    EXPECT_LT(lung + 40, spine) << s.id;
    const torch::Tensor b = s.ragged["boxes"];
    if (b.size(0)) {
      EXPECT_GE(b.min().item<float>(), 0);
      EXPECT_LE(b.max().item<float>(), 128);
    }
    EXPECT_EQ(s.fields["labels"][27].item<float>(), b.size(0) == 0 ? 1 : 0);
  }
}

TEST(VinDrCxr, BadFilesAreErrorsNamingFileAndLine) {
  const fs::path root = write_small_release(fresh_dir("bad"));
  std::ofstream(root / "annotations/annotations_train.csv", std::ios::app) << "aaa,R1,Heart attack,1,1,2,2\n";
  EXPECT_THAT(message_of([&] { open(root, "train"); }),
              HasSubstr("annotations_train.csv:11: class_name: \"Heart attack\" is not one of the 22 local labels"));
  write_small_release(root);
  std::ofstream(root / "annotations/annotations_train.csv", std::ios::app) << "aaa,R1,Atelectasis,9,1,2,2\n";
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("annotations_train.csv:11: box (9, 1, 2, 2)"));
  write_small_release(root);
  std::ofstream(root / "annotations/annotations_train.csv", std::ios::app) << "zzz,R1,Atelectasis,1,1,2,2\n";
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("image zzz has no row in image_labels_train.csv"));
  write_small_release(root);
  std::ofstream(root / "annotations/image_labels_train.csv", std::ios::app) << "ddd,Rx" << row({}) << "\n";
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("image_labels_train.csv:8: rad_id: expected R1, R2"));
  write_small_release(root);
  std::ofstream(root / "annotations/image_labels_train.csv", std::ios::app) << "ddd,R1" << row({}).replace(1, 1, "2") << "\n";
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("image_labels_train.csv:8: Aortic enlargement: expected 0 or 1, got 2"));
  write_small_release(root);
  fs::remove(root / "test/ccc.dicom");
  EXPECT_THAT(message_of([&] { open(root, "test")->get(0, 0); }), HasSubstr("ccc.dicom: no such DICOM file"));
  EXPECT_THAT(message_of([&] { open(root, "train", "readers: all"); }), HasSubstr("test.yaml:4: data.readers: expected one of each, union, fused, got \"all\""));
  EXPECT_THAT(message_of([&] { open(root / "nowhere", "train"); }), HasSubstr("image_labels_train.csv does not exist"));
}

}  // namespace
}  // namespace facet::data::test_vindr_cxr
