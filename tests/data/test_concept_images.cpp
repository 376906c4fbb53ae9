// The concept-folder reader (data/concept_images/concept_images.cpp) against the synthetic concept
// writer and hand-broken copies: images, masks and prompts per sample, prompt files overriding the
// shared prompt, the evaluation splits' prompts, and errors that name the file.
#include "core/config.h"
#include "core/file_io.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::data::test_concept_images {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test_support::message_of;

fs::path concept_folder(const std::string& name) {
  const fs::path root = test_support::scratch_dir("facet_test_concept", name);
  synth_registry().create(Config::parse("{name: concept, images: 3, size: 32}"), root);
  return root;
}

std::shared_ptr<Dataset> open(const fs::path& root, const std::string& split, const std::string& extra = "") {
  return dataset_registry().create(
      Config::parse(fmt::format("{{name: concept_images, root: {}, prompt: 'photo of a <new1> toy'{}}}", root.string(), extra)), split);
}

}  // namespace

TEST(ConceptImages, ImagesMasksAndPromptsWithPromptFilesOverriding) {
  const fs::path root = concept_folder("read");
  write_file_atomic(root / "0001.txt", "  a <new1> toy on a table\n");
  const auto set = open(root, "train", ", masks: masks, image_size: 16");
  ASSERT_EQ(set->size(), 3);
  const Sample s0 = set->get(0, 0), s1 = set->get(1, 0);
  EXPECT_EQ(s0.fields.at("image").sizes(), (std::vector<int64_t>{3, 16, 16}));
  const torch::Tensor mask = s0.fields.at("mask");
  EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{1, 16, 16}));
  EXPECT_TRUE(((mask == 0) | (mask == 1)).all().item<bool>());
  EXPECT_GT(mask.sum().item<float>(), 0);
  EXPECT_EQ(s0.text.at("prompt"), "photo of a <new1> toy");
  EXPECT_EQ(s1.text.at("prompt"), "a <new1> toy on a table");
  EXPECT_THAT(s0.id, HasSubstr("0000.png"));
  // Without masks: no mask field.
  EXPECT_FALSE(open(root, "train")->get(0, 0).fields.contains("mask"));
}

TEST(ConceptImages, EvaluationSplitsGenerateFromTheirPrompts) {
  const fs::path root = concept_folder("eval");
  const auto val = open(root, "val", ", eval_prompts: ['<new1> toy in the snow', 'a <new1> toy']");
  ASSERT_EQ(val->size(), 2);
  const Sample s = val->get(1, 0);
  EXPECT_EQ(s.text.at("prompt"), "a <new1> toy");
  EXPECT_TRUE(s.fields.empty());
  EXPECT_THAT(message_of([&] { open(root, "val"); }), HasSubstr("split val generates from prompts: give data.eval_prompts"));
}

TEST(ConceptImages, BadFilesAreNamed) {
  const fs::path root = concept_folder("bad");
  fs::remove(root / "masks" / "0002.png");
  EXPECT_THAT(message_of([&] { open(root, "train", ", masks: masks"); }),
              HasSubstr("no mask " + (root / "masks" / "0002.png").string() + " for " + (root / "0002.png").string()));
  write_file_atomic(root / "0000.txt", std::string(20000, 'x'));
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr((root / "0000.txt").string() + ": 20000 bytes; a prompt file holds at most 16384"));
  write_file_atomic(root / "0000.txt", "\xff\xfe bad");
  EXPECT_THAT(message_of([&] { open(root, "train"); }), HasSubstr((root / "0000.txt").string() + ": byte 0: the prompt is not UTF-8 text"));
  fs::remove(root / "0000.txt");
  EXPECT_THAT(message_of([&] {
                dataset_registry().create(Config::parse(fmt::format("{{name: concept_images, root: {}}}", root.string())), "train");
              }),
              HasSubstr("0000.png has no caption file 0000.txt and data.prompt is not set"));
  const fs::path empty = test_support::scratch_dir("facet_test_concept", "empty");
  EXPECT_THAT(message_of([&] { open(empty, "train"); }), HasSubstr("no images in " + empty.string()));
}

}  // namespace facet::data::test_concept_images
