// BP4D: the reader against the synthetic writer (shapes, label counts, unknown labels, folds,
// landmarks, frame names) and against hand-made files (header-name selection, malformed rows);
// the shared AU facts (fold tables, class weights) and the drawn faces (every AU visible).
#include "core/config.h"
#include "core/csv.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/face/face_io.h"
#include "data/face/synth_face.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/transform.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <set>

namespace facet::data::test_bp4d {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_bp4d", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: bp4d, root: {}{}}}", root.string(), extra)), split);
}

face::AuLabelSource& labels_of(const std::shared_ptr<Dataset>& d) { return dynamic_cast<face::AuLabelSource&>(*d); }

// The subject of a frame path <root>/img/<Subject>/<Task>/<frame>.jpg.
std::string subject_of(const std::string& id) { return fs::path(id).parent_path().parent_path().filename().string(); }

// One small synthetic set shared by the tests that only read it: 6 subjects x 2 tasks x 4 frames.
const fs::path& synth_root() {
  static const fs::path root = [] {
    const fs::path r = fresh_dir("synth");
    synth_registry().create(Config::parse("{name: bp4d, tasks: 2, frames_per_sequence: 4, size: 64, unknown_rate: 0.1}"), r);
    return r;
  }();
  return root;
}

TEST(Bp4d, ReadsTheSyntheticLayoutWithShapesAndLandmarks) {
  const auto d = open(synth_root(), "all", ", landmarks_dir: landmarks");
  ASSERT_EQ(d->size(), 6 * 2 * 4);
  EXPECT_EQ(d->label_names(), (std::vector<std::string>{"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15",
                                                        "AU17", "AU23", "AU24"}));
  const Sample s = d->get(5, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(s.fields.at("labels").sizes(), (std::vector<int64_t>{12}));
  EXPECT_EQ(s.fields.at("label_mask").sizes(), (std::vector<int64_t>{12}));
  ASSERT_EQ(s.fields.at("landmarks").sizes(), (std::vector<int64_t>{68, 2}));
  EXPECT_GT(s.fields.at("image").max().item<float>(), 100.0f);  // 0..255 units, not rescaled
  // The landmarks lie inside the frame.
  const auto lm = s.fields.at("landmarks");
  EXPECT_GT(lm.min().item<float>(), 0.0f);
  EXPECT_LT(lm.max().item<float>(), 64.0f);
  // image_size resizes the frame and scales the landmarks with it.
  const Sample half = open(synth_root(), "all", ", landmarks_dir: landmarks, image_size: 32")->get(5, 0);
  EXPECT_EQ(half.fields.at("image").sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(torch::allclose(half.fields.at("landmarks"), lm * 0.5f));
  EXPECT_EQ(half.id, s.id);
  // Without landmarks_dir there is no landmark field.
  EXPECT_FALSE(open(synth_root(), "all")->get(0, 0).fields.contains("landmarks"));
}

// The face models' pipeline (crop, flip, normalize) takes the decoded 8-bit pixels to normalised
// floats in one pass, and the reader resizes only the window the crop keeps (KeptWindow); the
// batches are those of the float path, which resizes whole frames (forced here by a `scale: 1`
// between flip and normalize, which needs float pixels).
TEST(Bp4d, EightBitPixelsGiveTheFloatPathsBatches) {
  // image_size 48: resized from the stored 64; 64: the decoded buffer itself.
  for (const int64_t size : {48, 64}) {
    auto batches = [&](const std::string& middle) {
      const auto d = open(synth_root(), "all", fmt::format(", landmarks_dir: landmarks, image_size: {}", size));
      LoaderOptions o;
      o.batch_size = 8;
      o.workers = 2;
      o.transforms = build_transforms(Config::parse("t: [{name: random_crop, size: 40}, {name: random_hflip}, " + middle +
                                                    "{name: normalize, mean: [127.5, 120, 110], std: [127.5, 60, 70]}]").at("t"));
      Loader loader(d, std::make_shared<RandomSampler>(d->size(), 3), o);
      loader.start_epoch(0);
      std::vector<Batch> out;
      while (auto b = loader.next()) out.push_back(std::move(*b));
      return std::make_pair(loader.eight_bit_images(), std::move(out));
    };
    const auto [eight_bit, fast] = batches("");
    const auto [float_path, slow] = batches("{name: scale, factor: 1.0}, ");
    EXPECT_TRUE(eight_bit);
    EXPECT_FALSE(float_path);
    ASSERT_EQ(fast.size(), slow.size());
    ASSERT_FALSE(fast.empty());
    for (size_t i = 0; i < fast.size(); ++i) {
      EXPECT_EQ(fast[i].fields.at("image").sizes(), (std::vector<int64_t>{8, 3, 40, 40}));
      EXPECT_TRUE(torch::allclose(fast[i].fields.at("image"), slow[i].fields.at("image"), 0, 1e-6)) << size << ", batch " << i;
      EXPECT_TRUE(torch::equal(fast[i].fields.at("landmarks"), slow[i].fields.at("landmarks"))) << size << ", batch " << i;
    }
  }
}

TEST(Bp4d, LabelCountsAndUnknownsMatchTheCsvs) {
  int64_t positives = 0, unknowns = 0, rows = 0;
  for (const auto& e : fs::directory_iterator(synth_root() / "AUCoding/AU_OCC")) {
    const CsvTable t = CsvTable::read(e.path());
    rows += static_cast<int64_t>(t.rows());
    for (int au : face::kBp4dAus)
      for (size_t r = 0; r < t.rows(); ++r) {
        const int64_t v = t.integer(r, t.column(std::to_string(au)));
        positives += v == 1;
        unknowns += v == 9;
      }
  }
  const auto d = open(synth_root(), "all");
  ASSERT_EQ(d->size(), rows);
  const auto labels = labels_of(d).all_labels(), mask = labels_of(d).all_label_masks();
  EXPECT_EQ(labels.sum().item<float>(), static_cast<float>(positives));
  EXPECT_EQ((mask == 0).sum().item<int64_t>(), unknowns);
  EXPECT_GT(unknowns, 0);
  EXPECT_GT(positives, 0);
  EXPECT_EQ((labels * (1 - mask)).sum().item<float>(), 0.0f);  // an unknown is never a positive
  // get() returns the same rows.
  for (int64_t i = 0; i < d->size(); i += 7) {
    const Sample s = d->get(i, 0);
    EXPECT_TRUE(torch::equal(s.fields.at("labels"), labels[i]));
    EXPECT_TRUE(torch::equal(s.fields.at("label_mask"), mask[i]));
  }
}

TEST(Bp4d, FoldsAreSubjectExclusiveAndFollowTheTable) {
  const std::vector<std::string> written = {"F001", "M001", "F003", "M002", "F004", "M003"};
  for (int fold = 1; fold <= 3; ++fold) {
    std::set<std::string> train, test, val;
    for (auto [split, out] : {std::pair{"train", &train}, std::pair{"test", &test}, std::pair{"val", &val}}) {
      const auto d = open(synth_root(), split, fmt::format(", fold: {}", fold));
      for (int64_t i = 0; i < d->size(); ++i) out->insert(subject_of(d->get(i, 0).id));
    }
    std::set<std::string> expected_test, expected_train;
    for (const auto& s : written)
      (face::part_of(face::bp4d_parts(), s) == fold ? expected_test : expected_train).insert(s);
    EXPECT_EQ(test, expected_test) << "fold " << fold;
    EXPECT_EQ(val, expected_test) << "fold " << fold;
    EXPECT_EQ(train, expected_train) << "fold " << fold;
  }
  EXPECT_THAT(message_of([&] { open(synth_root(), "train", ", fold: 4"); }), HasSubstr("fold: expected 1, 2 or 3, got 4"));
  EXPECT_THAT(message_of([&] { open(synth_root(), "holdout"); }), HasSubstr("not \"holdout\""));
}

TEST(Bp4d, PaddedAndBareFrameNamesAreBothFound) {
  const fs::path root = fresh_dir("names");
  synth_registry().create(Config::parse("{name: bp4d, subjects: [F001, F003], tasks: 1, frames_per_sequence: 3, size: 48, "
                                        "frame_names: bare}"),
                          root);
  const auto bare = open(root, "all");
  ASSERT_EQ(bare->size(), 6);
  // A bare name has no leading zero; the synthetic frames are numbered below 1000.
  const std::string first = fs::path(bare->get(0, 0).id).stem().string();
  EXPECT_NE(first[0], '0');
  // Rename every frame of one sequence to %04d, one frame of it back to bare: all still load.
  const fs::path dir = root / "img/F001/T1";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) fs::rename(f, dir / fmt::format("{:04d}.jpg", std::stoll(f.stem().string())));
  const auto mixed = open(root, "all");
  std::set<std::string> names;
  for (int64_t i = 0; i < mixed->size(); ++i) names.insert(fs::path(mixed->get(i, 0).id).filename().string());
  EXPECT_TRUE(names.count(fmt::format("{:04d}.jpg", std::stoll(files[0].stem().string()))));
  fs::rename(dir / fmt::format("{:04d}.jpg", std::stoll(files[1].stem().string())), files[1]);
  const auto d = open(root, "all");
  for (int64_t i = 0; i < d->size(); ++i) EXPECT_EQ(d->get(i, 0).fields.at("image").size(1), 48);
  // A missing frame names the expected file.
  fs::remove(files[1]);
  const auto broken = open(root, "all");
  std::string error;
  for (int64_t i = 0; i < broken->size() && error.empty(); ++i)
    if (std::string m = message_of([&] { broken->get(i, 0); }); m != "(no error)") error = m;
  EXPECT_THAT(error, HasSubstr(fmt::format("img/F001/T1/{:04d}.jpg: no such frame file", std::stoll(files[1].stem().string()))));
  // missing_frames: skip drops it at open time instead.
  EXPECT_EQ(open(root, "all", ", missing_frames: skip")->size(), d->size() - 1);
}

// A hand-made sequence: columns in an unusual order, extra AU columns, a 9.
void write_hand_made(const fs::path& root, const std::string& rows) {
  fs::create_directories(root / "AUCoding/AU_OCC");
  fs::create_directories(root / "img/F002/T3");
  std::ofstream(root / "AUCoding/AU_OCC/F002_T3.csv") << "24,0,1,2,3,4,5,6,7,9,10,11,12,13,14,15,16,17,18,19,20,22,23\n" << rows;
  for (int f : {7, 8}) cv::imwrite((root / fmt::format("img/F002/T3/{:04d}.jpg", f)).string(), cv::Mat(16, 16, CV_8UC3, cv::Scalar::all(f)));
}

TEST(Bp4d, ColumnsAreSelectedByHeaderName) {
  const fs::path root = fresh_dir("header");
  // AU24 first, frame in column 2; frame 7 has AU1 and AU24; frame 8 has AU12 and an unknown AU4.
  write_hand_made(root, "1,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
                        "0,8,0,0,0,9,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0\n");
  const auto d = open(root, "all");
  ASSERT_EQ(d->size(), 2);
  const auto l = labels_of(d).all_labels(), m = labels_of(d).all_label_masks();
  EXPECT_TRUE(torch::equal(l[0], torch::tensor(std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})));
  EXPECT_TRUE(torch::equal(l[1], torch::tensor(std::vector<float>{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0})));
  EXPECT_TRUE(torch::equal(m[1], torch::tensor(std::vector<float>{1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1})));
  EXPECT_THAT(d->get(1, 0).id, HasSubstr("img/F002/T3/0008.jpg"));
  EXPECT_NEAR(d->get(1, 0).fields.at("image").mean().item<float>(), 8.0f, 1.0f);
}

TEST(Bp4d, MalformedCsvRowsNameFileAndLine) {
  const fs::path root = fresh_dir("malformed");
  write_hand_made(root, "0,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
                        "0,8,0,1,0,0\n");
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("AU_OCC/F002_T3.csv:3: 6 fields, but the header has 23 columns"));
  write_hand_made(root, "0,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
                        "0,8,0,1,0,0,0,0,0,0,0,0,3,0,0,0,0,0,0,0,0,0,0\n");
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("F002_T3.csv:3: column 12: expected 0, 1 or 9 (unknown), got 3"));
  write_hand_made(root, "0,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
                        "0,x,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0\n");
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("F002_T3.csv:3: column 0: expected an integer, got \"x\""));
  write_hand_made(root, "0,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
                        "0,7,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0\n");
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("F002_T3.csv:3: frame 7 appears twice"));
  // A missing AU column lists the header.
  std::ofstream(root / "AUCoding/AU_OCC/F002_T3.csv") << "0,1,2\n7,0,0\n";
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("F002_T3.csv:1: no column \"4\""));
  // A bad landmark line names file and line.
  write_hand_made(root, "0,7,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n");
  fs::create_directories(root / "lm");
  std::ofstream(root / "lm/F002_T3.txt") << "7 1 2 3 4\n8 1 2 3\n";
  EXPECT_THAT(message_of([&] { open(root, "all", ", landmarks_dir: lm"); }), HasSubstr("lm/F002_T3.txt:2: expected the frame number and x y pairs"));
  std::ofstream(root / "lm/F002_T3.txt") << "8 1 2 3 4\n";
  EXPECT_THAT(message_of([&] { open(root, "all", ", landmarks_dir: lm"); }), HasSubstr("lm/F002_T3.txt: no landmarks for frame 7"));
}

TEST(Bp4d, SynthIsDeterministicFromTheSeed) {
  const fs::path a = fresh_dir("seed_a"), b = fresh_dir("seed_b"), c = fresh_dir("seed_c");
  const std::string opts = "name: bp4d, subjects: [M004], tasks: 1, frames_per_sequence: 2, size: 48";
  synth_registry().create(Config::parse("{" + opts + "}"), a);
  synth_registry().create(Config::parse("{" + opts + "}"), b);
  synth_registry().create(Config::parse("{" + opts + ", seed: 5}"), c);
  auto slurp = [](const fs::path& p) { std::ifstream f(p, std::ios::binary); return std::string(std::istreambuf_iterator<char>(f), {}); };
  EXPECT_EQ(slurp(a / "AUCoding/AU_OCC/M004_T1.csv"), slurp(b / "AUCoding/AU_OCC/M004_T1.csv"));
  EXPECT_EQ(slurp(a / "landmarks/M004_T1.txt"), slurp(b / "landmarks/M004_T1.txt"));
  EXPECT_NE(slurp(a / "landmarks/M004_T1.txt"), slurp(c / "landmarks/M004_T1.txt"));
}

TEST(AuFacts, FoldTablesMatchFaceMd) {
  const auto& b = face::bp4d_parts();
  EXPECT_EQ(b[0].size(), 14u);
  EXPECT_EQ(b[1].size(), 14u);
  EXPECT_EQ(b[2].size(), 13u);
  std::set<std::string> all;
  for (const auto& p : b) all.insert(p.begin(), p.end());
  EXPECT_EQ(all.size(), 41u);  // F001-F023, M001-M018, each once
  for (int i = 1; i <= 23; ++i) EXPECT_TRUE(all.count(fmt::format("F{:03d}", i)));
  for (int i = 1; i <= 18; ++i) EXPECT_TRUE(all.count(fmt::format("M{:03d}", i)));
  std::set<std::string> disfa;
  for (const auto& p : face::disfa_parts()) {
    EXPECT_EQ(p.size(), 9u);
    disfa.insert(p.begin(), p.end());
  }
  EXPECT_EQ(disfa.size(), 27u);
  for (const char* absent : {"SN014", "SN015", "SN019", "SN020", "SN022"}) EXPECT_FALSE(disfa.count(absent));
  EXPECT_EQ(face::part_of(b, "F007"), 3);
  EXPECT_EQ(face::part_of(face::disfa_parts(), "SN021"), 2);
  EXPECT_EQ(face::part_of(b, "F024"), 0);
  EXPECT_TRUE(face::in_split(2, 1, "train"));
  EXPECT_FALSE(face::in_split(1, 1, "train"));
  EXPECT_TRUE(face::in_split(1, 1, "test"));
  EXPECT_FALSE(face::in_split(0, 1, "all"));
}

TEST(AuFacts, ClassWeightsAreInverseRatesSummingToTheAuCount) {
  // AU A: 3 positives of 4 known (r = 3/4); AU B: the 4th label is unknown, 1 positive of 3 (r = 1/3).
  // 1/r = 4/3 and 3, sum 13/3; w = 2 * (4/3, 3) / (13/3) = (8/13, 18/13).
  const auto labels = torch::tensor({{1.f, 0.f}, {1.f, 1.f}, {0.f, 0.f}, {1.f, 0.f}});
  const auto mask = torch::tensor({{1.f, 1.f}, {1.f, 1.f}, {1.f, 1.f}, {1.f, 0.f}});
  const auto w = face::au_class_weights(labels, mask, {"A", "B"});
  EXPECT_TRUE(torch::allclose(w, torch::tensor({8.f / 13.f, 18.f / 13.f}))) << w;
  EXPECT_NEAR(w.sum().item<float>(), 2.0f, 1e-6);
  EXPECT_TRUE(torch::allclose(face::au_pos_weights(labels, mask, {"A", "B"}), torch::tensor({1.f / 3.f, 2.f})));
  EXPECT_THAT(message_of([&] { face::au_class_weights(torch::zeros({3, 2}), torch::ones({3, 2}), {"A", "B"}); }),
              HasSubstr("A never occurs"));
  // From a dataset: the training split's weights sum to 12.
  const auto d = open(synth_root(), "train", ", fold: 2");
  const auto dw = labels_of(d).class_weights();
  EXPECT_EQ(dw.size(0), 12);
  EXPECT_NEAR(dw.sum().item<float>(), 12.0f, 1e-4);
}

TEST(AuFacts, EveryBenchmarkAuChangesTheDrawnFace) {
  std::vector<int> aus(face::kBp4dAus.begin(), face::kBp4dAus.end());
  aus.insert(aus.end(), {9, 25, 26});  // DISFA's others
  face::SynthRng id_rng(3);
  const auto id = face::random_identity(id_rng, 96);
  auto draw = [&](std::map<int, int> intensities, std::vector<cv::Point2f>* lm = nullptr) {
    face::SynthRng rng(11);  // same pose and noise for every call
    cv::Mat image(96, 96, CV_8UC3);
    auto points = face::draw_face(image, id, intensities, rng);
    if (lm) *lm = points;
    cv::Mat grey;
    image.convertTo(grey, CV_32F);
    return grey;
  };
  std::vector<cv::Point2f> neutral_lm, smile_lm, sad_lm;
  const cv::Mat neutral = draw({}, &neutral_lm);
  ASSERT_EQ(neutral_lm.size(), 68u);
  for (int au : aus) {
    const cv::Mat moved = draw({{au, 5}});
    cv::Mat diff;
    cv::absdiff(moved, neutral, diff);
    double max_diff = 0;
    cv::minMaxLoc(diff.reshape(1), nullptr, &max_diff);
    EXPECT_GT(cv::sum(diff)[0] + cv::sum(diff)[1] + cv::sum(diff)[2], 96 * 96 * 0.5) << "AU" << au;
    EXPECT_GT(max_diff, 60) << "AU" << au;
  }
  // AU12 lifts the mouth corners (48, 54), AU15 lowers them; AU1 raises the inner brow (21).
  draw({{12, 5}}, &smile_lm);
  draw({{15, 5}}, &sad_lm);
  EXPECT_LT(smile_lm[48].y, neutral_lm[48].y - 2);
  EXPECT_GT(sad_lm[54].y, neutral_lm[54].y + 2);
  std::vector<cv::Point2f> brow_lm;
  draw({{1, 5}}, &brow_lm);
  EXPECT_LT(brow_lm[21].y, neutral_lm[21].y - 2);
  EXPECT_NEAR(brow_lm[17].y, neutral_lm[17].y, 0.5);
}

}  // namespace
}  // namespace facet::data::test_bp4d
