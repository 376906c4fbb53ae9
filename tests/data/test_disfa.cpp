// DISFA: the reader against the synthetic writer (shapes, label counts, folds, landmarks) and
// against hand-written label files (intensity >= 2 threshold, 1-based labels vs 0-based frames,
// frame names, malformed lines).
#include "core/config.h"
#include "data/dataset.h"
#include "data/disfa/videos.h"
#include "data/face/au.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <set>

namespace facet::data::test_disfa {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_disfa", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: disfa, root: {}{}}}", root.string(), extra)), split);
}

face::AuLabelSource& labels_of(const std::shared_ptr<Dataset>& d) { return dynamic_cast<face::AuLabelSource&>(*d); }

const fs::path& synth_root() {
  static const fs::path root = [] {
    const fs::path r = fresh_dir("synth");
    synth_registry().create(Config::parse("{name: disfa, frames_per_subject: 24, size: 64}"), r);
    return r;
  }();
  return root;
}

TEST(Disfa, ReadsTheSyntheticLayout) {
  const auto d = open(synth_root(), "all", ", landmarks_dir: landmarks");
  ASSERT_EQ(d->size(), 6 * 24);
  EXPECT_EQ(d->label_names(), (std::vector<std::string>{"AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26"}));
  const Sample s = d->get(3, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(s.fields.at("labels").sizes(), (std::vector<int64_t>{8}));
  EXPECT_TRUE(torch::equal(s.fields.at("label_mask"), torch::ones({8})));
  EXPECT_EQ(s.fields.at("landmarks").sizes(), (std::vector<int64_t>{68, 2}));
  EXPECT_TRUE(torch::equal(s.fields.at("labels"), (s.fields.at("intensity") >= 2).to(torch::kFloat)));
  EXPECT_THAT(s.id, HasSubstr("img/SN001/3.png"));  // 0-based frames, bare names, PNG

  // Label counts: benchmark-AU lines with intensity >= 2 in the files the writer wrote.
  int64_t positives = 0, traces = 0;
  for (const auto& subject : fs::directory_iterator(synth_root() / "ActionUnit_Labels"))
    for (int au : face::kDisfaAus) {
      std::ifstream f(subject.path() / fmt::format("{}_au{}.txt", subject.path().filename().string(), au));
      std::string line;
      while (std::getline(f, line)) {
        const int v = std::stoi(line.substr(line.find(',') + 1));
        positives += v >= 2;
        traces += v == 1;
      }
    }
  EXPECT_EQ(labels_of(d).all_labels().sum().item<float>(), static_cast<float>(positives));
  EXPECT_GT(positives, 0);
  EXPECT_GT(traces, 0);  // the writer exercises the threshold too
}

TEST(Disfa, FoldsAreSubjectExclusiveAndFollowTheTable) {
  const std::vector<std::string> written = {"SN001", "SN002", "SN006", "SN011", "SN003", "SN004"};
  for (int fold = 1; fold <= 3; ++fold) {
    std::set<std::string> train, test;
    for (auto [split, out] : {std::pair{"train", &train}, std::pair{"test", &test}}) {
      const auto d = open(synth_root(), split, fmt::format(", fold: {}", fold));
      for (int64_t i = 0; i < d->size(); ++i) out->insert(fs::path(d->get(i, 0).id).parent_path().filename().string());
    }
    std::set<std::string> expected_test, expected_train;
    for (const auto& s : written)
      (face::part_of(face::disfa_parts(), s) == fold ? expected_test : expected_train).insert(s);
    EXPECT_EQ(test, expected_test) << "fold " << fold;
    EXPECT_EQ(train, expected_train) << "fold " << fold;
  }
  const auto w = labels_of(open(synth_root(), "train", ", fold: 3")).class_weights();
  EXPECT_NEAR(w.sum().item<float>(), 8.0f, 1e-4);
}

// SN002 with 3 labelled frames; frame f's image (index f - 1) is filled with grey 40 * f.
void write_tiny(const fs::path& root, const std::vector<int>& intensities, const std::string& name_format = "{}",
                const std::string& ext = ".png") {
  fs::create_directories(root / "ActionUnit_Labels/SN002");
  fs::create_directories(root / "img/SN002");
  for (int au : face::kDisfaAus) {
    std::ofstream f(root / fmt::format("ActionUnit_Labels/SN002/SN002_au{}.txt", au));
    for (size_t i = 0; i < intensities.size(); ++i) f << i + 1 << "," << (au == 12 ? intensities[i] : 0) << "\n";
  }
  for (size_t i = 0; i < intensities.size(); ++i)
    cv::imwrite((root / "img/SN002" / (fmt::format(fmt::runtime(name_format), i) + ext)).string(),
                cv::Mat(8, 8, CV_8UC3, cv::Scalar::all(40.0 * static_cast<double>(i + 1))));
}

TEST(Disfa, OccurrenceIsIntensityAtLeastTwoAndLabelsAreOneBased) {
  const fs::path root = fresh_dir("tiny");
  write_tiny(root, {1, 2, 0, 5});
  const auto d = open(root, "all");
  ASSERT_EQ(d->size(), 4);
  const auto au12 = labels_of(d).all_labels().select(1, 5);
  EXPECT_TRUE(torch::equal(au12, torch::tensor({0.f, 1.f, 0.f, 1.f}))) << au12;
  for (int64_t i = 0; i < 4; ++i) {
    const Sample s = d->get(i, 0);
    // Label line f pairs with image f - 1, whose grey is 40 * f.
    EXPECT_NEAR(s.fields.at("image").mean().item<float>(), 40.0f * static_cast<float>(i + 1), 0.5f);
    EXPECT_THAT(s.id, HasSubstr(fmt::format("img/SN002/{}.png", i)));
  }
  EXPECT_EQ(d->get(0, 0).fields.at("intensity")[5].item<float>(), 1.0f);
  // SN002 is in part 1: the fold-1 training split has nothing.
  EXPECT_THAT(message_of([&] { open(root, "train", ", fold: 1"); }), HasSubstr("no labelled DISFA frames of split train (fold 1)"));
  EXPECT_EQ(open(root, "train", ", fold: 2")->size(), 4);
}

TEST(Disfa, PaddedAndJpegFrameNamesAreFound) {
  const fs::path padded = fresh_dir("padded");
  write_tiny(padded, {0, 3}, "{:04d}");
  EXPECT_THAT(open(padded, "all")->get(1, 0).id, HasSubstr("img/SN002/0001.png"));
  const fs::path jpg = fresh_dir("jpg");
  write_tiny(jpg, {0, 3}, "{}", ".jpg");
  EXPECT_THAT(open(jpg, "all")->get(1, 0).id, HasSubstr("img/SN002/1.jpg"));
  fs::remove(jpg / "img/SN002/1.jpg");
  EXPECT_THAT(message_of([&] { open(jpg, "all")->get(1, 0); }), HasSubstr("img/SN002/1.jpg: no such frame file"));
  EXPECT_EQ(open(jpg, "all", ", missing_frames: skip")->size(), 1);
  fs::remove_all(jpg / "img/SN002");
  EXPECT_THAT(message_of([&] { open(jpg, "all"); }), HasSubstr("img/SN002: no frame directory for the labels in"));
}

TEST(Disfa, MalformedLabelFilesNameFileAndLine) {
  const fs::path root = fresh_dir("bad");
  write_tiny(root, {0, 3, 1});
  std::ofstream(root / "ActionUnit_Labels/SN002/SN002_au4.txt") << "1,0\n2;3\n3,0\n";
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("SN002_au4.txt:2: expected \"frame,intensity\""));
  std::ofstream(root / "ActionUnit_Labels/SN002/SN002_au4.txt") << "1,0\n2,7\n3,0\n";
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("SN002_au4.txt:2: intensity 7: expected 0..5"));
  std::ofstream(root / "ActionUnit_Labels/SN002/SN002_au4.txt") << "0,0\n";
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("SN002_au4.txt:1: frame 0: DISFA label frames are 1-based"));
  std::ofstream(root / "ActionUnit_Labels/SN002/SN002_au4.txt") << "1,0\n2,0\n4,0\n";
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("SN002_au4.txt: no label for frame 3"));
  fs::remove(root / "ActionUnit_Labels/SN002/SN002_au4.txt");
  EXPECT_THAT(message_of([&] { open(root, "all"); }), HasSubstr("SN002_au4.txt: cannot open the AU label file"));
}

}  // namespace
}  // namespace facet::data::test_disfa

namespace facet::data::test_disfa {
namespace {

// The release ships videos: `facet data frames` extracts them so that image t holds label frame t + 1.
// The same synthetic subjects written as frames and as Motion-JPEG videos (one seed): after
// extraction every sample of the reader has the same labels as the frame-written set and an image
// within JPEG error of it — and far from its neighbours' images, so an off-by-one cannot pass.
TEST(Disfa, FramesExtractedFromTheVideosPairWithTheirLabels) {
  const std::string synth = "{name: disfa, subjects: [SN001, SN006, SN003], frames_per_subject: 13, size: 64, seed: 5";
  const fs::path frames = fresh_dir("as_frames"), videos = fresh_dir("as_videos");
  synth_registry().create(Config::parse(synth + "}"), frames);
  synth_registry().create(Config::parse(synth + ", videos: true}"), videos);
  ASSERT_TRUE(fs::exists(videos / "Videos_LeftCamera" / "LeftVideoSN003_comp.avi"));
  ASSERT_FALSE(fs::exists(videos / "img"));
  EXPECT_THAT(message_of([&] { open(videos, "train")->get(0, 0); }), HasSubstr("img"));

  disfa::FrameExtraction options;
  options.workers = 2;
  auto subjects = disfa::extract_frames(videos, {}, options);
  ASSERT_EQ(subjects.size(), 3u);
  for (const auto& s : subjects) {
    EXPECT_EQ(s.frames, 13) << s.subject;
    EXPECT_EQ(s.label_lines, 13) << s.subject;
    EXPECT_FALSE(s.resumed);
  }
  EXPECT_TRUE(disfa::extract_frames(videos, {}, options)[0].resumed);  // a second run leaves finished subjects

  for (const std::string split : {"train", "test"}) {
    const auto expected = open(frames, split), extracted = open(videos, split);
    ASSERT_EQ(extracted->size(), expected->size());
    for (int64_t i = 0; i < expected->size(); ++i) {
      const Sample a = expected->get(i, 0), b = extracted->get(i, 0);
      EXPECT_EQ(fs::path(a.id).filename(), fs::path(b.id).filename());
      EXPECT_TRUE(torch::equal(a.fields.at("labels"), b.fields.at("labels"))) << b.id;
      const double same = (a.fields.at("image") - b.fields.at("image")).abs().mean().item<double>();
      EXPECT_LT(same, 4.0) << b.id;  // Motion JPEG's error, in 0..255 levels
      if (i + 1 < expected->size()) {
        const double next = (expected->get(i + 1, 0).fields.at("image") - b.fields.at("image")).abs().mean().item<double>();
        EXPECT_GT(next, same) << b.id;
      }
    }
  }
  // A folder without the videos is named.
  EXPECT_THAT(message_of([&] { disfa::extract_frames(frames, {}, options); }),
              HasSubstr("Videos_LeftCamera: no such folder; DISFA's left-camera videos"));
}

}  // namespace
}  // namespace facet::data::test_disfa
