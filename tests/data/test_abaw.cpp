// ABAW4 MTL: the reader against the synthetic writer (fields, missing labels per task, disjoint
// videos, AUs that agree with the drawn expression, class weights) and against hand-made files
// (malformed lines named by file:line, missing images, splits).
#include "core/config.h"
#include "data/abaw/abaw.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace facet::data::test_abaw {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_abaw", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: abaw_mtl, root: {}{}}}", root.string(), extra)), split);
}

const fs::path& synth_root() {
  static const fs::path root = [] {
    const fs::path r = fresh_dir("synth");
    synth_registry().create(Config::parse("{name: abaw, train_videos: 6, val_videos: 3, frames_per_video: 40, size: 64, "
                                          "va_missing: 0.15, expression_missing: 0.15, au_missing: 0.15}"),
                            r);
    return r;
  }();
  return root;
}

// The data lines of an annotation file, split at commas.
std::vector<std::vector<std::string>> rows_of(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  std::vector<std::vector<std::string>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    rows.push_back(f);
  }
  return rows;
}

TEST(Abaw, ReadsTheSyntheticLayout) {
  const auto train = open(synth_root(), "train"), val = open(synth_root(), "val");
  ASSERT_EQ(train->size(), 6 * 40);
  ASSERT_EQ(val->size(), 3 * 40);
  EXPECT_EQ(train->label_names(), (std::vector<std::string>{"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23",
                                                            "AU24", "AU25", "AU26"}));
  const Sample s = train->get(7, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_GT(s.fields.at("image").max().item<float>(), 100.0f);  // 0..255
  EXPECT_EQ(s.fields.at("va").sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(s.fields.at("va_mask").sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(s.fields.at("expression").dim(), 0);
  EXPECT_EQ(s.fields.at("expression").scalar_type(), torch::kInt64);
  EXPECT_EQ(s.fields.at("labels").sizes(), (std::vector<int64_t>{12}));
  EXPECT_EQ(s.fields.at("label_mask").sizes(), (std::vector<int64_t>{12}));
  EXPECT_THAT(s.id, HasSubstr("cropped_aligned/1-30-"));
  EXPECT_EQ(open(synth_root(), "train", ", image_size: 32")->get(7, 0).fields.at("image").sizes(),
            (std::vector<int64_t>{3, 32, 32}));
  // Training and validation videos are disjoint.
  std::set<std::string> train_videos, val_videos;
  for (int64_t i = 0; i < train->size(); ++i) train_videos.insert(fs::path(train->get(i, 0).id).parent_path().filename());
  for (int64_t i = 0; i < val->size(); ++i) val_videos.insert(fs::path(val->get(i, 0).id).parent_path().filename());
  EXPECT_EQ(train_videos.size(), 6u);
  EXPECT_EQ(val_videos.size(), 3u);
  for (const auto& v : val_videos) EXPECT_FALSE(train_videos.count(v)) << v;
}

TEST(Abaw, MissingLabelsFollowTheFileTaskByTask) {
  const auto d = open(synth_root(), "train");
  const auto rows = rows_of(synth_root() / abaw::kTrainFile);
  ASSERT_EQ(static_cast<int64_t>(rows.size()), d->size());
  int64_t va_missing = 0, expr_missing = 0, au_missing = 0;
  for (int64_t i = 0; i < d->size(); ++i) {
    const auto& f = rows[static_cast<size_t>(i)];
    ASSERT_EQ(f.size(), 16u);
    const Sample s = d->get(i, 0);
    const bool no_va = f[1] == "-5", no_expr = f[3] == "-1", no_au = f[4] == "-1";
    va_missing += no_va;
    expr_missing += no_expr;
    au_missing += no_au;
    EXPECT_FALSE(no_va && no_expr && no_au) << "frame " << i << " has no annotation at all";
    EXPECT_EQ(s.fields.at("va_mask").sum().item<float>(), no_va ? 0.0f : 2.0f);
    if (no_va) EXPECT_EQ(s.fields.at("va").abs().sum().item<float>(), 0.0f);  // never -5
    else EXPECT_NEAR(s.fields.at("va")[0].item<float>(), std::stod(f[1]), 1e-6);
    EXPECT_EQ(s.fields.at("expression").item<int64_t>(), std::stoll(f[3]));
    EXPECT_EQ(s.fields.at("label_mask").sum().item<float>(), no_au ? 0.0f : 12.0f);
    for (size_t k = 0; k < 12; ++k)
      EXPECT_EQ(s.fields.at("labels")[static_cast<int64_t>(k)].item<float>(), f[4 + k] == "1" ? 1.0f : 0.0f);
  }
  // 15% each of 240 frames, give or take.
  for (int64_t missing : {va_missing, expr_missing, au_missing}) {
    EXPECT_GT(missing, 15);
    EXPECT_LT(missing, 70);
  }
  // The label source the `auto` class weights read: the same labels, unknown = 0 with mask 0.
  const auto& source = dynamic_cast<const face::AuLabelSource&>(*d);
  EXPECT_EQ(source.all_labels().sizes(), (std::vector<int64_t>{240, 12}));
  EXPECT_EQ((source.all_label_masks() == 0).sum().item<int64_t>(), 12 * au_missing);
  EXPECT_EQ((source.all_labels() * (1 - source.all_label_masks())).sum().item<float>(), 0.0f);
  const torch::Tensor pos_weight = face::au_pos_weights(source.all_labels(), source.all_label_masks(), source.au_label_names());
  EXPECT_EQ(pos_weight.sizes(), (std::vector<int64_t>{12}));
  EXPECT_TRUE((pos_weight > 0).all().item<bool>());
}

TEST(Abaw, DrawnAusAndValenceAgreeWithTheExpression) {
  // Happiness (4) is drawn with AU12 (p 0.95) and AU6 (0.8), Sadness (5) with AU15 and AU1,
  // Neutral (0) with neither, and valence follows the circumplex (happy > 0 > sad).
  const auto d = open(synth_root(), "train");
  std::map<int64_t, std::vector<torch::Tensor>> labels;
  std::map<int64_t, std::vector<double>> valence;
  for (int64_t i = 0; i < d->size(); ++i) {
    const Sample s = d->get(i, 0);
    const int64_t e = s.fields.at("expression").item<int64_t>();
    if (e < 0) continue;
    if (s.fields.at("label_mask").sum().item<float>() > 0) labels[e].push_back(s.fields.at("labels"));
    if (s.fields.at("va_mask")[0].item<float>() > 0) valence[e].push_back(s.fields.at("va")[0].item<double>());
  }
  auto rate = [&](int64_t e, int64_t au_index) { return torch::stack(labels.at(e)).select(1, au_index).mean().item<double>(); };
  auto mean = [&](int64_t e) {
    double sum = 0;
    for (double v : valence.at(e)) sum += v;
    return sum / static_cast<double>(valence.at(e).size());
  };
  constexpr int64_t kAu1 = 0, kAu6 = 3, kAu12 = 6, kAu15 = 7;
  EXPECT_GT(rate(4, kAu12), 0.8);
  EXPECT_GT(rate(4, kAu6), 0.5);
  EXPECT_LT(rate(0, kAu12), 0.2);
  EXPECT_GT(rate(5, kAu15), 0.6);
  EXPECT_GT(rate(5, kAu1), 0.5);
  EXPECT_GT(mean(4), 0.3);
  EXPECT_LT(mean(5), -0.3);
  EXPECT_LT(std::abs(mean(0)), 0.1);
}

// A hand-made root with one image and an annotation file `text` for the training split.
fs::path hand_made(const std::string& name, const std::string& text) {
  const fs::path root = fresh_dir(name);
  fs::create_directories(root / "cropped_aligned/v1");
  cv::imwrite((root / "cropped_aligned/v1/00001.jpg").string(), cv::Mat(16, 16, CV_8UC3, cv::Scalar(10, 20, 30)));
  std::ofstream(root / abaw::kTrainFile) << text;
  return root;
}

TEST(Abaw, MalformedAnnotationsNameTheFileAndLine) {
  const std::string header = "image,valence,arousal,expression,aus\n";
  const std::string good = "v1/00001.jpg,0.25,-0.5,4,0,0,0,1,0,0,1,0,0,0,1,0\n";
  const auto msg = [&](const std::string& name, const std::string& bad_line) {
    const fs::path root = hand_made(name, header + good + bad_line);
    return message_of([&] { open(root, "train"); });
  };
  EXPECT_THAT(msg("fields", "v1/00001.jpg,0.1,0.2,3,0,0\n"),
              HasSubstr("training_set_annotations.txt:3: expected 16 comma-separated fields"));
  EXPECT_THAT(msg("valence", "v1/00001.jpg,1.5,0.2,3,0,0,0,0,0,0,0,0,0,0,0,0\n"),
              HasSubstr(":3: valence: expected a number in [-1, 1] or -5 (missing), got \"1.5\""));
  EXPECT_THAT(msg("arousal", "v1/00001.jpg,0.1,abc,3,0,0,0,0,0,0,0,0,0,0,0,0\n"), HasSubstr(":3: arousal: expected a number"));
  EXPECT_THAT(msg("expression", "v1/00001.jpg,0.1,0.2,8,0,0,0,0,0,0,0,0,0,0,0,0\n"),
              HasSubstr(":3: expression: expected an integer 0..7 or -1 (missing), got \"8\""));
  EXPECT_THAT(msg("expression_fraction", "v1/00001.jpg,0.1,0.2,2.5,0,0,0,0,0,0,0,0,0,0,0,0\n"),
              HasSubstr(":3: expression: expected an integer"));
  EXPECT_THAT(msg("au", "v1/00001.jpg,0.1,0.2,3,0,0,2,0,0,0,0,0,0,0,0,0\n"),
              HasSubstr(":3: AU4: expected 0, 1 or -1 (missing), got \"2\""));
  EXPECT_THAT(msg("path", ",0.1,0.2,3,0,0,0,0,0,0,0,0,0,0,0,0\n"), HasSubstr(":3: empty image path"));
  EXPECT_THAT(message_of([&] { open(hand_made("header_only", header), "train"); }), HasSubstr("no annotated frames"));
  EXPECT_THAT(message_of([&] { open(hand_made("empty", ""), "train"); }), HasSubstr("empty file"));
  EXPECT_THAT(message_of([&] { open(hand_made("split", header + good), "test"); }),
              HasSubstr("abaw_mtl has the splits train and val"));
  EXPECT_THAT(message_of([&] { open(hand_made("noval", header + good), "val"); }),
              HasSubstr("validation_set_annotations.txt: cannot open"));
  EXPECT_THAT(message_of([&] { open(fs::temp_directory_path() / "facet_no_such_abaw", "train"); }), HasSubstr("is not a directory"));
  EXPECT_THAT(message_of([&] { open(hand_made("option", header + good), "train", ", missing_images: ignore"); }),
              HasSubstr("missing_images: expected error or skip"));
}

TEST(Abaw, HandMadeValuesMissingMarksAndMissingImages) {
  // CRLF, spaces around fields, a blank line, -5 on valence only, and a frame without its image.
  const fs::path root = hand_made("values", "header\r\n v1/00001.jpg , -5 , 0.5 , -1 ,1,0,0,0,0,0,0,0,0,0,0,1\r\n\r\n"
                                            "v1/00002.jpg,0.3,-5,7,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n");
  const auto d = open(root, "train");
  ASSERT_EQ(d->size(), 2);
  const Sample s = d->get(0, 0);
  EXPECT_TRUE(torch::equal(s.fields.at("va"), torch::tensor({0.0f, 0.5f})));
  EXPECT_TRUE(torch::equal(s.fields.at("va_mask"), torch::tensor({0.0f, 1.0f})));
  EXPECT_EQ(s.fields.at("expression").item<int64_t>(), -1);
  EXPECT_EQ(s.fields.at("labels")[0].item<float>(), 1.0f);
  EXPECT_EQ(s.fields.at("labels")[11].item<float>(), 1.0f);
  EXPECT_EQ(s.fields.at("label_mask").sum().item<float>(), 12.0f);
  EXPECT_NEAR(s.fields.at("image")[0][8][8].item<float>(), 30, 3);  // RGB order (written as BGR 10, 20, 30)
  EXPECT_NEAR(s.fields.at("image")[2][8][8].item<float>(), 10, 3);
  // The second frame's file is missing: an error naming it when loaded, or skipped when opening.
  EXPECT_THAT(message_of([&] { d->get(1, 0); }), HasSubstr("v1/00002.jpg"));
  const auto skipped = open(root, "train", ", missing_images: skip");
  ASSERT_EQ(skipped->size(), 1);
  EXPECT_THAT(skipped->get(0, 0).id, HasSubstr("00001.jpg"));
}

}  // namespace
}  // namespace facet::data::test_abaw
