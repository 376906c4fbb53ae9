// Facial palsy: the reader against the synthetic writer (shapes, grades, subject-exclusive splits,
// landmarks, the droop growing with the grade) and against hand-made files (every error names the
// file and line), including the landmarks.txt files `facet data align` writes beside its crops.
#include "core/config.h"
#include "data/dataset.h"
#include "data/face/synth_face.h"
#include "data/palsy/palsy.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace facet::data::test_palsy {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_palsy", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: palsy, root: {}{}}}", root.string(), extra)), split);
}

void write(const fs::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
}

// 12 subjects x 2 images, 3 grades: the fourth subject of each grade is the test split.
const fs::path& synth_root() {
  static const fs::path root = [] {
    const fs::path r = fresh_dir("synth");
    const SynthResult result =
        synth_registry().create(Config::parse("{name: palsy, subjects: 12, images_per_subject: 2, size: 64, grades: 3, splits: [train, train, train, test]}"), r);
    EXPECT_EQ(result.files, 24 + 2);
    EXPECT_THAT(result.summary, HasSubstr("train 18, val 0, test 6 images"));
    return r;
  }();
  return root;
}

// The subject of an image path .../images/P007_1.jpg.
std::string subject_of(const std::string& id) { return fs::path(id).filename().string().substr(0, 4); }

TEST(Palsy, ReadsTheSyntheticLayoutWithGradesLandmarksAndSubjectExclusiveSplits) {
  const auto train = open(synth_root(), "train", ", grades: 3"), test = open(synth_root(), "test", ", grades: 3");
  ASSERT_EQ(train->size(), 18);
  ASSERT_EQ(test->size(), 6);
  EXPECT_EQ(open(synth_root(), "all", ", grades: 3")->size(), 24);
  EXPECT_EQ(train->label_names(), (std::vector<std::string>{"grade0", "grade1", "grade2"}));
  const Sample s = train->get(3, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_GT(s.fields.at("image").max().item<float>(), 100.0f);  // 0..255 units
  EXPECT_EQ(s.fields.at("label").scalar_type(), torch::kInt64);
  EXPECT_EQ(s.fields.at("label").dim(), 0);
  ASSERT_EQ(s.fields.at("landmarks").sizes(), (std::vector<int64_t>{68, 2}));
  EXPECT_GT(s.fields.at("landmarks").min().item<float>(), 0.0f);
  EXPECT_LT(s.fields.at("landmarks").max().item<float>(), 64.0f);
  // Every grade in both splits; no subject in both.
  std::set<int64_t> train_grades, test_grades;
  std::set<std::string> train_subjects;
  for (int64_t i = 0; i < train->size(); ++i) {
    const Sample x = train->get(i, 0);
    train_grades.insert(x.fields.at("label").item<int64_t>());
    train_subjects.insert(subject_of(x.id));
  }
  for (int64_t i = 0; i < test->size(); ++i) {
    const Sample x = test->get(i, 0);
    test_grades.insert(x.fields.at("label").item<int64_t>());
    EXPECT_FALSE(train_subjects.count(subject_of(x.id))) << x.id;
  }
  EXPECT_EQ(train_grades, (std::set<int64_t>{0, 1, 2}));
  EXPECT_EQ(test_grades, (std::set<int64_t>{0, 1, 2}));
  // landmarks: none drops them; image_size rescales image and landmarks together.
  EXPECT_FALSE(open(synth_root(), "train", ", grades: 3, landmarks: none")->get(3, 0).fields.contains("landmarks"));
  const Sample half = open(synth_root(), "train", ", grades: 3, image_size: 32")->get(3, 0);
  EXPECT_EQ(half.fields.at("image").sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(torch::allclose(half.fields.at("landmarks"), s.fields.at("landmarks") * 0.5f));
  // Six grades are House-Brackmann's by default.
  EXPECT_EQ(open(synth_root(), "train")->label_names(),
            (std::vector<std::string>{"HB-I", "HB-II", "HB-III", "HB-IV", "HB-V", "HB-VI"}));
}

TEST(Palsy, TheDroopSagsOneSideOnlyAndGrowsWithTheGrade) {
  face::SynthRng rng(5);
  const auto id = face::random_identity(rng, 128);
  cv::Mat image(128, 128, CV_8UC3);
  const auto points = face::draw_face(image, id, {}, rng);
  cv::Mat sagged = image.clone();
  auto moved = points;
  palsy::droop_face(sagged, moved, -1, 1.0, id.half_width);
  // The image's left mouth corner (48) and brow (19) go down; their mirror points (54, 24) stay.
  EXPECT_NEAR(moved[48].y - points[48].y, 0.28 * id.half_width, 0.02 * id.half_width);
  EXPECT_GT(moved[19].y - points[19].y, 0.1 * id.half_width);
  EXPECT_LT(std::abs(moved[54].y - points[54].y), 0.01 * id.half_width);
  EXPECT_LT(std::abs(moved[24].y - points[24].y), 0.01 * id.half_width);
  for (size_t i = 0; i < 68; ++i) EXPECT_EQ(moved[i].x, points[i].x);
  // Pixels change on the sagging half only.
  const int right = static_cast<int>(points[54].x + 0.25 * id.half_width);
  cv::Mat diff;
  cv::absdiff(image, sagged, diff);
  double max_right = 0, max_left = 0;
  cv::minMaxLoc(diff(cv::Rect(right, 0, 128 - right, 128)).reshape(1), nullptr, &max_right);
  cv::minMaxLoc(diff(cv::Rect(0, 0, static_cast<int>(points[48].x) + 4, 128)).reshape(1), nullptr, &max_left);
  EXPECT_LE(max_right, 1.0);
  EXPECT_GT(max_left, 30.0);
  // Severity 0 is the unchanged face.
  cv::Mat same = image.clone();
  auto kept = points;
  palsy::droop_face(same, kept, 1, 0.0, id.half_width);
  EXPECT_EQ(cv::norm(same, image, cv::NORM_INF), 0);
  EXPECT_THAT(message_of([&] { palsy::droop_face(same, kept, 0, 0.5, 10); }), HasSubstr("side must be -1"));

  // In the written set, the mouth corners' height difference grows with the grade.
  const auto all = open(synth_root(), "all", ", grades: 3");
  std::map<int64_t, std::pair<double, int>> asymmetry;
  for (int64_t i = 0; i < all->size(); ++i) {
    const Sample x = all->get(i, 0);
    const auto lm = x.fields.at("landmarks");
    auto& [sum, count] = asymmetry[x.fields.at("label").item<int64_t>()];
    sum += std::abs((lm[48][1] - lm[54][1]).item<double>());
    ++count;
  }
  const auto mean = [&](int64_t g) { return asymmetry[g].first / asymmetry[g].second; };
  EXPECT_LT(mean(0) + 1, mean(1));
  EXPECT_LT(mean(1) + 1, mean(2));
}

// A hand-made root with two 16 x 16 images a.png and b.png (and sub/c.png).
fs::path hand_made(const std::string& name, const std::string& labels) {
  const fs::path root = fresh_dir(name);
  fs::create_directories(root / "images" / "sub");
  const cv::Mat grey(16, 16, CV_8UC3, cv::Scalar(90, 90, 90));
  for (const char* f : {"a.png", "b.png", "sub/c.png"}) cv::imwrite((root / "images" / f).string(), grey);
  write(root / "labels.csv", labels);
  return root;
}

std::string two_points(float v) { return fmt::format(" {} {} {} {}", v, v, v + 1, v + 1); }

TEST(Palsy, BadLabelFilesAreErrorsNamingFileAndLine) {
  const std::string header = "image,grade,split\n";
  {
    const fs::path r = hand_made("missing_column", "image,split\na.png,train\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("grade"));
  }
  {
    const fs::path r = hand_made("range", header + "a.png,0,train\nb.png,7,test\n");
    EXPECT_THAT(message_of([&] { open(r, "train", ", grades: 3"); }),
                HasSubstr("labels.csv:3: column grade: expected 0..2 (0-based, 3 grades), got 7"));
  }
  {
    const fs::path r = hand_made("not_int", header + "a.png,two,train\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("labels.csv:2"));
  }
  {
    const fs::path r = hand_made("split", header + "a.png,1,dev\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("labels.csv:2: column split: expected train, val or test, got \"dev\""));
    EXPECT_THAT(message_of([&] { open(r, "dev"); }), HasSubstr("palsy has the splits train, val, test and all, not \"dev\""));
  }
  {
    const fs::path r = hand_made("duplicate", header + "a.png,1,train\nb.png,1,train\n./a.png,2,test\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("labels.csv:4: image a.png is already listed at"));
  }
  {
    const fs::path r = hand_made("no_file", header + "a.png,1,train\nz.png,1,train\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("labels.csv:3: " + (r / "images" / "z.png").string() + ": no such image file"));
    // Rows of other splits are validated, but only the split's own images must exist.
    EXPECT_THAT(message_of([&] { open(r, "val"); }), HasSubstr("no images of split val in " + (r / "labels.csv").string()));
  }
}

TEST(Palsy, LandmarkFilesAreCheckedAndAlignedFoldersRead) {
  const std::string labels = "image,grade,split,subject\na.png,0,train,S1\nb.png,2,train,S2\nsub/c.png,1,test,S3\n";
  {
    const fs::path r = hand_made("lm_root", labels);
    write(r / "landmarks.txt", "# image x y ...\na.png" + two_points(1) + "\nb.png" + two_points(2) + "\nsub/c.png" + two_points(3) + "\n");
    const auto d = open(r, "train");
    ASSERT_EQ(d->size(), 2);
    EXPECT_TRUE(torch::allclose(d->get(1, 0).fields.at("landmarks"), torch::tensor({{2.f, 2.f}, {3.f, 3.f}})));
    EXPECT_EQ(d->get(1, 0).fields.at("label").item<int64_t>(), 2);
    EXPECT_EQ(open(r, "test")->get(0, 0).fields.at("landmarks").size(0), 2);
  }
  {
    const fs::path r = hand_made("lm_odd", labels);
    write(r / "landmarks.txt", "a.png" + two_points(1) + "\nb.png 1 2 3\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }),
                HasSubstr("landmarks.txt:2: expected an image name and x y pairs, got 3 numbers after the name"));
  }
  {
    const fs::path r = hand_made("lm_nan", labels);
    write(r / "landmarks.txt", "a.png 1 2 x 4\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("landmarks.txt:1: field 4: expected a finite number, got \"x\""));
    write(r / "landmarks.txt", "a.png 1 nan 3 4\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("landmarks.txt:1: field 3: expected a finite number, got \"nan\""));
    write(r / "landmarks.txt", "a.png 1 2 -inf 4\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("landmarks.txt:1: field 4: expected a finite number, got \"-inf\""));
  }
  {
    const fs::path r = hand_made("lm_missing", labels);
    write(r / "landmarks.txt", "a.png" + two_points(1) + "\n");
    EXPECT_THAT(message_of([&] { open(r, "train"); }), HasSubstr("no landmarks for b.png (labelled at " + (r / "labels.csv").string() + ":3)"));
    EXPECT_THAT(message_of([&] { open(r, "train", ", landmarks: other.txt"); }), HasSubstr("other.txt does not exist"));
  }
  {
    // `facet data align raw/ <root>/images/` writes one landmarks.txt per folder, names relative to it.
    const fs::path r = hand_made("lm_aligned", labels);
    write(r / "images" / "landmarks.txt", "a.png" + two_points(1) + "\nb.png" + two_points(2) + "\n");
    write(r / "images" / "sub" / "landmarks.txt", "c.png" + two_points(7) + "\n");
    const Sample c = open(r, "test")->get(0, 0);
    EXPECT_TRUE(torch::allclose(c.fields.at("landmarks"), torch::tensor({{7.f, 7.f}, {8.f, 8.f}})));
    write(r / "images" / "sub" / "landmarks.txt", "c.png" + two_points(7) + "\nc.png" + two_points(7) + "\n");
    EXPECT_THAT(message_of([&] { open(r, "test"); }), HasSubstr("sub/landmarks.txt:2: image c.png already has landmarks at"));
  }
}

}  // namespace
}  // namespace facet::data::test_palsy
