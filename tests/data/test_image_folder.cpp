// ImageFolder: the reader against the synthetic LSD writer (classes, counts, labels by folder) and
// against hand-made trees (class order shared across splits, a split lacking a class, extensions,
// folder mapping, errors).
#include "core/config.h"
#include "data/dataset.h"
#include "data/image_folder/image_folder.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>

namespace facet::data::test_image_folder {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_dir("facet_test_imagefolder", name); }

using test_support::message_of;

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(Config::parse(fmt::format("{{name: image_folder, root: {}{}}}", root.string(), extra)), split);
}

void image(const fs::path& p, int value = 128) {
  fs::create_directories(p.parent_path());
  ASSERT_TRUE(cv::imwrite(p.string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(value, value, value))));
}

TEST(ImageFolder, ReadsTheSyntheticLsdSet) {
  const fs::path root = fresh_dir("lsd");
  const SynthResult r =
      synth_registry().create(Config::parse("{name: lsd, train_images: 60, val_images: 24, size: 64}"), root);
  EXPECT_EQ(r.files, 84);
  const auto train = open(root, "train"), val = open(root, "val");
  ASSERT_EQ(train->size(), 60);
  ASSERT_EQ(val->size(), 24);
  const std::vector<std::string> classes = {"anger", "disgust", "fear", "happiness", "sadness", "surprise"};
  EXPECT_EQ(train->label_names(), classes);
  EXPECT_EQ(val->label_names(), classes);
  std::vector<int64_t> counts(6, 0);
  for (int64_t i = 0; i < train->size(); ++i) {
    const Sample s = train->get(i, 0);
    ASSERT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 64, 64}));
    const int64_t label = s.fields.at("label").item<int64_t>();
    EXPECT_EQ(s.fields.at("label").scalar_type(), torch::kInt64);
    EXPECT_EQ(fs::path(s.id).parent_path().filename().string(), classes[static_cast<size_t>(label)]);
    ++counts[static_cast<size_t>(label)];
  }
  // Imbalanced by default: happiness (share 0.3) is the most common class.
  EXPECT_EQ(std::max_element(counts.begin(), counts.end()) - counts.begin(), 3);
  for (int64_t c : counts) EXPECT_GT(c, 0);
  EXPECT_EQ(open(root, "val", ", image_size: 32")->get(0, 0).fields.at("image").sizes(), (std::vector<int64_t>{3, 32, 32}));
}

TEST(ImageFolder, ClassesComeFromTheTrainingFolderSoIndicesAgreeAcrossSplits) {
  const fs::path root = fresh_dir("classes");
  image(root / "train/cat/1.png");
  image(root / "train/dog/1.png");
  image(root / "train/dog/2.JPG");      // extensions are case-insensitive
  image(root / "train/emu/b/3.jpeg");   // nested folders count for their class
  std::ofstream(root / "train/dog/notes.txt") << "not an image";
  image(root / "validation/emu/1.png");  // no cat or dog here
  const auto train = open(root, "train");
  ASSERT_EQ(train->size(), 4);
  EXPECT_EQ(train->label_names(), (std::vector<std::string>{"cat", "dog", "emu"}));
  EXPECT_EQ(train->get(0, 0).fields.at("label").item<int64_t>(), 0);
  EXPECT_EQ(train->get(1, 0).fields.at("label").item<int64_t>(), 1);
  EXPECT_EQ(train->get(2, 0).fields.at("label").item<int64_t>(), 1);
  EXPECT_EQ(train->get(3, 0).fields.at("label").item<int64_t>(), 2);
  // `folders` maps the split to its folder; emu keeps index 2 although cat and dog are absent.
  const auto val = open(root, "val", ", folders: {train: train, val: validation}");
  ASSERT_EQ(val->size(), 1);
  EXPECT_EQ(val->get(0, 0).fields.at("label").item<int64_t>(), 2);
  EXPECT_EQ(val->label_names().size(), 3u);
  // A class the training folder does not have is an error, not a silent new index.
  image(root / "validation/yak/1.png");
  EXPECT_THAT(message_of([&] { open(root, "val", ", folders: {val: validation}"); }),
              HasSubstr("class folder \"yak\" is not among the classes"));
}

TEST(ImageFolder, ErrorsNameWhatIsMissing) {
  const fs::path root = fresh_dir("errors");
  EXPECT_THAT(message_of([&] { open(root / "absent", "train"); }), HasSubstr("is not a directory"));
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("split train:"));
  fs::create_directories(root / "train");
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("no class folders"));
  fs::create_directories(root / "train/cat");
  std::ofstream(root / "train/cat/readme.md") << "x";
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr("no images under"));
  // An undecodable image fails when loaded, naming the file.
  std::ofstream(root / "train/cat/broken.jpg") << "not a jpeg";
  const auto d = open(root, "train");
  EXPECT_THAT(message_of([&] { d->get(0, 0); }), HasSubstr("broken.jpg"));
}

}  // namespace
}  // namespace facet::data::test_image_folder
