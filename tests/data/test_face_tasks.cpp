// face_tasks: the reader against the synthetic writer (fields, shapes, unknown labels, AU class
// weights) and against hand-written CSVs (every label encoding, column selection and order, each
// malformed value by file:line), the drawn labels being visible in the pixels and landmarks, and
// the horizontal flip turning the head pose the other way.
#include "core/config.h"
#include "data/dataset.h"
#include "data/face/au.h"
#include "data/synth.h"
#include "data/transform.h"
#include "tests/support/scratch.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numbers>

namespace facet::data::test_face_tasks {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Shape = std::vector<int64_t>;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_face_tasks", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: face_tasks, root: {}{}}}", root.string(), extra)), split);
}

// 60 train and 10 val faces at 64 px, a third of each task's labels unknown.
const fs::path& synth_root() {
  static const fs::path root = [] {
    const fs::path r = fresh_dir("synth");
    const SynthResult s = synth_registry().create(Config::parse("{name: face_tasks, train: 60, val: 10, size: 64, missing: 0.3}"), r);
    EXPECT_EQ(s.files, 70 + 2);
    return r;
  }();
  return root;
}

torch::Tensor stack_field(const Dataset& d, const std::string& field) {
  std::vector<torch::Tensor> all;
  for (int64_t i = 0; i < d.size(); ++i) all.push_back(d.get(i, 0).fields.at(field));
  return torch::stack(all);
}

TEST(FaceTasks, ReadsTheSyntheticSetWithEveryTask) {
  const auto d = open(synth_root(), "train");
  ASSERT_EQ(d->size(), 60);
  EXPECT_EQ(open(synth_root(), "val")->size(), 10);
  EXPECT_EQ(d->label_names(), (std::vector<std::string>{"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15",
                                                        "AU17", "AU23", "AU24"}));
  const Sample s = d->get(3, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (Shape{3, 64, 64}));
  EXPECT_GT(s.fields.at("image").max().item<float>(), 100);  // file units
  EXPECT_EQ(s.fields.at("expression").dim(), 0);
  EXPECT_EQ(s.fields.at("expression").scalar_type(), torch::kInt64);
  EXPECT_EQ(s.fields.at("labels").sizes(), (Shape{12}));
  EXPECT_EQ(s.fields.at("label_mask").sizes(), (Shape{12}));
  EXPECT_EQ(s.fields.at("attributes").sizes(), (Shape{6}));
  EXPECT_EQ(s.fields.at("attribute_mask").sizes(), (Shape{6}));
  EXPECT_EQ(s.fields.at("age").dim(), 0);
  EXPECT_EQ(s.fields.at("age_mask").dim(), 0);
  EXPECT_EQ(s.fields.at("pose").sizes(), (Shape{3}));
  EXPECT_EQ(s.fields.at("pose_mask").sizes(), (Shape{3}));
  EXPECT_EQ(s.fields.at("landmarks").sizes(), (Shape{68, 2}));
  EXPECT_THAT(s.id, HasSubstr("images/train/00003.jpg"));

  // Labels in range; about a third unknown per task; unknown entries read as 0 under a 0 mask.
  const auto expression = stack_field(*d, "expression");
  EXPECT_TRUE(((expression >= -1) & (expression < 7)).all().item<bool>());
  const double known_expression = (expression >= 0).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(known_expression, 0.45);
  EXPECT_LT(known_expression, 0.9);
  const auto attributes = stack_field(*d, "attributes"), attribute_mask = stack_field(*d, "attribute_mask");
  EXPECT_TRUE(((attributes == 0) | (attributes == 1)).all().item<bool>());
  EXPECT_EQ((attributes * (1 - attribute_mask)).sum().item<float>(), 0);
  EXPECT_GT(attribute_mask.mean().item<double>(), 0.45);
  EXPECT_LT(attribute_mask.mean().item<double>(), 0.9);
  const auto age = stack_field(*d, "age"), age_mask = stack_field(*d, "age_mask");
  EXPECT_TRUE((((age >= 18) & (age <= 80)) | (age_mask == 0)).all().item<bool>());
  const auto pose = stack_field(*d, "pose"), pose_mask = stack_field(*d, "pose_mask");
  EXPECT_LE(pose.select(1, 0).abs().max().item<float>(), 40);
  EXPECT_LE(pose.select(1, 1).abs().max().item<float>(), 25);
  EXPECT_LE(pose.select(1, 2).abs().max().item<float>(), 30);
  EXPECT_TRUE(torch::equal(pose_mask.select(1, 0), pose_mask.select(1, 2)));  // the writer drops all three angles at once
  // Every attribute and AU label vector has positives and negatives somewhere; AU weights are computable.
  EXPECT_GT((attributes * attribute_mask).sum(0).min().item<float>(), 0);
  const auto& source = dynamic_cast<const face::AuLabelSource&>(*d);
  const torch::Tensor w = source.class_weights();
  EXPECT_EQ(w.sizes(), (Shape{12}));
  EXPECT_NEAR(w.sum().item<double>(), 12, 1e-4);

  // image_size resizes the image and its landmarks together.
  const Sample half = open(synth_root(), "train", ", image_size: 32")->get(3, 0);
  EXPECT_EQ(half.fields.at("image").sizes(), (Shape{3, 32, 32}));
  EXPECT_TRUE(torch::allclose(half.fields.at("landmarks"), s.fields.at("landmarks") * 0.5f));
}

// Writes <root>/<split>.csv and an image for every row of `rows` whose image column is set.
fs::path hand_made(const std::string& name, const std::string& csv, const std::vector<std::string>& images) {
  const fs::path root = fresh_dir(name);
  fs::create_directories(root / "images" / "a");
  const cv::Mat grey(8, 8, CV_8UC3, cv::Scalar(90, 100, 110));
  for (const auto& image : images) cv::imwrite((root / "images" / image).string(), grey);
  std::ofstream(root / "train.csv") << csv;
  return root;
}

TEST(FaceTasks, ReadsEveryLabelEncodingOfHandWrittenFiles) {
  // Columns in an unusual order; CelebA's -1/1 and 0/1 attributes, BP4D's 9 and ABAW's -1 unknown AUs.
  const fs::path root = hand_made("encodings",
                                  "attr_Smiling,au_12,image,au_2,expression,age,attr_Eyeglasses,yaw,pitch,roll,landmarks\n"
                                  "1,1,a/0.png,0,3,25.5,-1,10,-5,2.5,\"1, 2, 3, 4\"\n"
                                  "-1,9,a/1.png,1,-1,,0,,,,\"5, 6, 7, 8\"\n"
                                  ",-1,a/2.png,,,40,1,-30,0,,\"0, 0, 8, 8\"\n",
                                  {"a/0.png", "a/1.png", "a/2.png"});
  const auto d = open(root, "train");
  ASSERT_EQ(d->size(), 3);
  EXPECT_EQ(d->label_names(), (std::vector<std::string>{"AU2", "AU12"}));  // by AU number, not column order
  auto field = [&](const std::string& f) { return stack_field(*d, f); };
  EXPECT_TRUE(torch::equal(field("expression"), torch::tensor({3, -1, -1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(field("labels"), torch::tensor({{0.f, 1.f}, {1.f, 0.f}, {0.f, 0.f}})));
  EXPECT_TRUE(torch::equal(field("label_mask"), torch::tensor({{1.f, 1.f}, {1.f, 0.f}, {0.f, 0.f}})));
  // Attributes sorted by name: Eyeglasses, Smiling.
  EXPECT_TRUE(torch::equal(field("attributes"), torch::tensor({{0.f, 1.f}, {0.f, 0.f}, {1.f, 0.f}})));
  EXPECT_TRUE(torch::equal(field("attribute_mask"), torch::tensor({{1.f, 1.f}, {1.f, 1.f}, {1.f, 0.f}})));
  EXPECT_TRUE(torch::equal(field("age"), torch::tensor({25.5f, 0.f, 40.f})));
  EXPECT_TRUE(torch::equal(field("age_mask"), torch::tensor({1.f, 0.f, 1.f})));
  EXPECT_TRUE(torch::equal(field("pose"), torch::tensor({{10.f, -5.f, 2.5f}, {0.f, 0.f, 0.f}, {-30.f, 0.f, 0.f}})));
  EXPECT_TRUE(torch::equal(field("pose_mask"), torch::tensor({{1.f, 1.f, 1.f}, {0.f, 0.f, 0.f}, {1.f, 1.f, 0.f}})));
  EXPECT_TRUE(torch::equal(field("landmarks")[2], torch::tensor({{0.f, 0.f}, {8.f, 8.f}})));

  // Explicit selections fix the order and may leave columns out.
  const auto chosen = open(root, "train", ", aus: [12], attributes: [Smiling, Eyeglasses]");
  EXPECT_EQ(chosen->label_names(), (std::vector<std::string>{"AU12"}));
  EXPECT_TRUE(torch::equal(chosen->get(0, 0).fields.at("attributes"), torch::tensor({1.f, 0.f})));
  EXPECT_THAT(message_of([&] { open(root, "train", ", aus: [4]"); }), HasSubstr("no column \"au_4\""));

  // A file with only some tasks yields only their fields; AU weights then have nothing to weigh.
  const fs::path only = hand_made("only_age", "image,age\na/0.png,30\n", {"a/0.png"});
  const Sample s = open(only, "train")->get(0, 0);
  EXPECT_TRUE(s.fields.contains("age"));
  EXPECT_FALSE(s.fields.contains("labels"));
  EXPECT_FALSE(s.fields.contains("expression"));
  EXPECT_FALSE(s.fields.contains("pose"));
  const auto d_only = open(only, "train");
  EXPECT_THAT(message_of([&] { dynamic_cast<const face::AuLabelSource&>(*d_only).class_weights(); }),
              HasSubstr("has no au_<n> columns"));
}

TEST(FaceTasks, MalformedFilesAreNamedByLineAndColumn) {
  auto error = [](const std::string& name, const std::string& csv, const std::string& extra = "") {
    const fs::path root = hand_made(name, csv, {"a/0.png", "a/1.png"});
    return message_of([&] { open(root, "train", extra); });
  };
  EXPECT_THAT(error("expr", "image,expression\na/0.png,1\na/1.png,7\n"),
              HasSubstr("train.csv:3: column expression: expected -1 (unknown) or a class in 0..6, got 7"));
  EXPECT_THAT(error("expr8", "image,expression\na/0.png,7\n", ", expression_classes: 8"), HasSubstr("(no error)"));
  EXPECT_THAT(error("au", "image,au_1\na/0.png,2\n"), HasSubstr("train.csv:2: column au_1: expected 0, 1, or 9 / -1 / empty (unknown), got 2"));
  EXPECT_THAT(error("au_name", "image,au_x\na/0.png,1\n"), HasSubstr("column \"au_x\": expected au_<AU number>"));
  EXPECT_THAT(error("attr", "image,attr_Bald\na/0.png,yes\n"), HasSubstr("train.csv:2: column attr_Bald: expected an integer, got \"yes\""));
  EXPECT_THAT(error("attr2", "image,attr_Bald\na/0.png,2\n"), HasSubstr("expected 1 (present), 0 or -1 (absent), or empty (unknown), got 2"));
  EXPECT_THAT(error("age", "image,age\na/0.png,-3\n"), HasSubstr("train.csv:2: column age: expected an age >= 0, got -3"));
  EXPECT_THAT(error("pose", "image,yaw,pitch\na/0.png,1,2\n"), HasSubstr("head pose needs the three columns yaw, pitch and roll, the file has 2"));
  EXPECT_THAT(error("noimage", "image,age\na/0.png,3\na/9.png,4\n"), HasSubstr("train.csv:3: "));
  EXPECT_THAT(error("noimage2", "image,age\na/9.png,4\n"), HasSubstr("a/9.png: no such image"));
  EXPECT_THAT(error("noimage3", "image,age\na/9.png,4\n", ", check_files: false"), HasSubstr("(no error)"));
  EXPECT_THAT(error("nocol", "path,age\na/0.png,4\n"), HasSubstr("train.csv:1: no column \"image\""));
  EXPECT_THAT(error("lm", "image,landmarks\na/0.png,\"1, 2, 3, 4\"\na/1.png,\"1, 2\"\n"),
              HasSubstr("train.csv:3: column landmarks: 1 landmarks, but the first row has 2"));
  EXPECT_THAT(error("lm_odd", "image,landmarks\na/0.png,\"1, 2, 3\"\n"), HasSubstr("3 numbers, expected x, y pairs"));
  EXPECT_THAT(error("empty", "image,age\n"), HasSubstr("no rows"));
  const fs::path root = hand_made("split", "image\na/0.png\n", {"a/0.png"});
  EXPECT_THAT(message_of([&] { open(root, "val"); }), HasSubstr("val.csv (splits found: train)"));
}

// Pearson correlation of two float vectors.
double correlation(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.to(torch::kDouble) - a.to(torch::kDouble).mean(), y = b.to(torch::kDouble) - b.to(torch::kDouble).mean();
  return ((x * y).sum() / (x.norm() * y.norm())).item<double>();
}

TEST(FaceTasks, SyntheticLabelsAreVisible) {
  const fs::path root = fresh_dir("visible");
  synth_registry().create(Config::parse("{name: face_tasks, train: 80, val: 0, size: 96, missing: 0, unknown_rate: 0}"), root);
  const auto d = open(root, "train");
  const auto lm = stack_field(*d, "landmarks"), pose = stack_field(*d, "pose"), age = stack_field(*d, "age");
  const auto images = stack_field(*d, "image"), attributes = stack_field(*d, "attributes");
  // Roll: the angle of the line between the eye centres (clockwise in the image, y down); yaw and
  // pitch tilt the projected line a little, and the drawing jitters it by up to 3.4 degrees.
  const auto right_eye = lm.narrow(1, 36, 6).mean(1), left_eye = lm.narrow(1, 42, 6).mean(1);
  const auto eye_line = left_eye - right_eye;
  const auto roll = torch::atan2(eye_line.select(1, 1), eye_line.select(1, 0)) * 180 / std::numbers::pi;
  EXPECT_GT(correlation(roll, pose.select(1, 2)), 0.9);
  // Yaw: perspective enlarges the half of the face that comes closer (yaw > 0: the image-right
  // half), measured as the log ratio of the eye widths, after undoing the roll.
  auto width = [&](int64_t from) { return (lm.select(1, from + 3) - lm.select(1, from)).norm(2, 1); };
  EXPECT_GT(correlation(torch::log(width(42) / width(36)), pose.select(1, 0)), 0.8);
  // Pitch: the upper half comes closer with pitch > 0, so eyes-to-brows grows against nose-to-chin.
  const auto brows = lm.narrow(1, 17, 10).mean(1), eyes = lm.narrow(1, 36, 12).mean(1);
  const auto nose = lm.select(1, 33), chin = lm.select(1, 8);
  EXPECT_GT(correlation(torch::log((eyes - brows).norm(2, 1) / (chin - nose).norm(2, 1)), pose.select(1, 1)), 0.5);
  // Age: the brows grey (their pixels brighten, relative to the skin between them).
  std::vector<float> brow_level;
  for (int64_t i = 0; i < d->size(); ++i) {
    float sum = 0;
    for (int64_t k = 18; k <= 25; ++k) {
      if (k == 21 || k == 22) continue;
      const auto x = static_cast<int64_t>(lm[i][k][0].item<float>()), y = static_cast<int64_t>(lm[i][k][1].item<float>());
      sum += images[i].select(1, std::clamp<int64_t>(y, 0, 95)).select(1, std::clamp<int64_t>(x, 0, 95)).mean().item<float>();
    }
    brow_level.push_back(sum / 6);
  }
  EXPECT_GT(correlation(torch::tensor(brow_level), age), 0.5);
  // Pale_Skin (attribute 2, sorted names): a brighter face centre (the nose bridge, landmark 28).
  std::vector<float> skin;
  for (int64_t i = 0; i < d->size(); ++i) {
    const auto x = static_cast<int64_t>(lm[i][28][0].item<float>()), y = static_cast<int64_t>(lm[i][28][1].item<float>());
    skin.push_back(images[i].select(1, y).select(1, x).mean().item<float>());
  }
  EXPECT_GT(correlation(torch::tensor(skin), attributes.select(1, 2)), 0.6);
}

TEST(FaceTasks, HorizontalFlipTurnsTheHeadPoseTheOtherWay) {
  const auto d = open(synth_root(), "train");
  Sample s = d->get(0, 0);
  const torch::Tensor pose = s.fields.at("pose").clone(), mask = s.fields.at("pose_mask").clone();
  const auto flip = transform_registry().create(Config::parse("{name: random_hflip, p: 1.0}"));
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  flip->apply(s, g);
  EXPECT_TRUE(torch::equal(s.fields.at("pose"), pose * torch::tensor({-1.f, 1.f, -1.f})));
  EXPECT_TRUE(torch::equal(s.fields.at("pose_mask"), mask));
  Sample bad;
  bad.fields["image"] = torch::zeros({3, 4, 4});
  bad.fields["pose"] = torch::zeros({2});
  bad.id = "x";
  EXPECT_THAT(message_of([&] { flip->apply(bad, g); }), HasSubstr("random_hflip: pose must be (yaw, pitch, roll)"));
}

}  // namespace
}  // namespace facet::data::test_face_tasks
