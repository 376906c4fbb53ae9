// LiteGPT's answers from the VinDr-CXR CSVs against a transcription of the reference
// (tools/golden/litegpt_answers_golden.py): several readers, overlapping boxes with the greedy
// chaining quirk, "No finding" beside findings, half-even rounding, per-axis scaling, the test
// spelling "Other disease", and the prompts with their missing comma.
#include "core/csv.h"
#include "data/vindr_cxr/litegpt_answers.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace facet::data::vindr_cxr::test_litegpt_answers {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

const fs::path kDir = fs::path(test_support::kSourceDir) / "tests/fixtures/litegpt_answers";

json expected() {
  std::ifstream f(kDir / "expected.json");
  return json::parse(f);
}

std::map<std::string, std::pair<double, double>> sizes() {
  const CsvTable t = CsvTable::read(kDir / "sizes.csv");
  std::map<std::string, std::pair<double, double>> out;
  for (size_t r = 0; r < t.rows(); ++r) out[t.cell(r, 0)] = {t.number(r, 1), t.number(r, 2)};
  return out;
}

std::vector<std::string> split_items(const std::string& local) {
  const std::string prefix = "Local diseases of this chest radiograph are ";
  EXPECT_EQ(local.rfind(prefix, 0), 0u) << local;
  EXPECT_EQ(local.back(), '.');
  const std::string body = local.substr(prefix.size(), local.size() - prefix.size() - 1);
  std::vector<std::string> items;
  size_t start = 0;
  for (size_t at = body.find(','); ; at = body.find(',', start)) {
    items.push_back(body.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + 1;
  }
  return items;
}

void check_split(const std::string& split) {
  const json want = expected()[split];
  const auto labels = litegpt_labels(CsvTable::read(kDir / "annotations" / ("image_labels_" + split + ".csv")),
                                     CsvTable::read(kDir / "annotations" / ("annotations_" + split + ".csv")));
  const auto size = sizes();
  ASSERT_EQ(labels.size(), want.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const json& w = want[i];
    SCOPED_TRACE(w["image_id"].get<std::string>());
    EXPECT_EQ(labels[i].image_id, w["image_id"].get<std::string>());  // first-appearance order
    const auto [width, height] = size.at(labels[i].image_id);
    const LiteGptAnswer a = litegpt_answer(labels[i], width, height);
    EXPECT_EQ(a.global, w["global"].get<std::string>());
    auto items = split_items(a.local);
    std::sort(items.begin(), items.end());
    EXPECT_EQ(items, w["local_items"].get<std::vector<std::string>>());
    if (w["grounded_is_global"].get<bool>()) EXPECT_EQ(a.grounded, a.global);
    else EXPECT_EQ(a.grounded, a.global + " " + a.local);
  }
}

TEST(LiteGptAnswers, TrainMatchesTheReferenceTranscription) { check_split("train"); }
TEST(LiteGptAnswers, TestSplitSpellingMatchesTheReferenceTranscription) { check_split("test"); }

TEST(LiteGptAnswers, ChainingKeepsTheFirstRowOfEachGreedyGroupInCsvOrder) {
  const auto labels = litegpt_labels(CsvTable::read(kDir / "annotations/image_labels_train.csv"),
                                     CsvTable::read(kDir / "annotations/annotations_train.csv"));
  const auto& b = labels.at(1);
  ASSERT_EQ(b.image_id, "img_b");
  std::vector<std::array<double, 4>> nodules;
  for (const auto& box : b.local)
    if (box.class_name == "Nodule/Mass") nodules.push_back(*box.box);
  // Rows 0 and 1 survive: the pass over pairs moved row 3 into row 1's group (a union-find would
  // have kept row 0 alone).
  ASSERT_EQ(nodules.size(), 2u);
  EXPECT_EQ(nodules[0], (std::array<double, 4>{100, 100, 200, 200}));
  EXPECT_EQ(nodules[1], (std::array<double, 4>{145, 145, 245, 245}));
  // Local items keep the order of their first kept row.
  EXPECT_EQ(litegpt_answer(b, 800, 1000).local,
            "Local diseases of this chest radiograph are <p>Nodule/Mass</p> {<12><10><25><20>},<p>Nodule/Mass</p> "
            "{<18><14><31><24>},<p>Pleural effusion</p> {<62><70><98><95>},<p>Aortic enlargement</p> {<48><25><57><33>}.");
  // Without de-duplication every row stays.
  const auto all = litegpt_labels(CsvTable::read(kDir / "annotations/image_labels_train.csv"),
                                  CsvTable::read(kDir / "annotations/annotations_train.csv"), false);
  EXPECT_EQ(all.at(1).local.size(), 7u);
}

TEST(LiteGptAnswers, IouUsesThePlusOneConvention) {
  EXPECT_DOUBLE_EQ(litegpt_iou({0, 0, 0, 0}, {0, 0, 0, 0}), 1.0);
  EXPECT_DOUBLE_EQ(litegpt_iou({0, 0, 9, 9}, {5, 0, 14, 9}), 50.0 / 150.0);
  EXPECT_DOUBLE_EQ(litegpt_iou({0, 0, 9, 9}, {10, 0, 19, 9}), 0.0);
}

TEST(LiteGptAnswers, PromptsAreTheReleasedOnes) {
  const json want = expected();
  const auto pool = want["grounding_prompts"].get<std::vector<std::string>>();
  ASSERT_EQ(pool.size(), kLiteGptGroundingPrompts.size());
  for (size_t i = 0; i < pool.size(); ++i) EXPECT_EQ(kLiteGptGroundingPrompts[i], pool[i]) << i;
  EXPECT_EQ(kLiteGptVqaPrompt, want["vqa_prompt"].get<std::string>());
  EXPECT_EQ(litegpt_instruction(kLiteGptGroundingPrompts[0]), want["instruction_example"].get<std::string>());
}

TEST(LiteGptAnswers, ErrorsNameTheFileLineAndImage) {
  const CsvTable labels = CsvTable::parse(
      "image_id,rad_id,Lung tumor,Pneumonia,Tuberculosis,Other diseases,COPD,No finding\nimg_x,R1,0,1,0,0,0,0\n",
      "labels.csv");
  EXPECT_THAT(test_support::message_of([&] {
                litegpt_labels(labels, CsvTable::parse("image_id,class_name,x_min,y_min,x_max,y_max\nimg_y,Edema,1,2,3,4\n",
                                                       "boxes.csv"));
              }),
              HasSubstr("boxes.csv:2: image img_y has no row in labels.csv"));
  EXPECT_THAT(test_support::message_of([&] {
                litegpt_labels(labels, CsvTable::parse("image_id,class_name,x_min,y_min,x_max,y_max\nimg_x,Oedema,1,2,3,4\n",
                                                       "boxes.csv"));
              }),
              HasSubstr("boxes.csv:2: class_name: \"Oedema\" is not one of the 22 local labels"));
  const auto l = litegpt_labels(labels, CsvTable::parse("image_id,class_name,x_min,y_min,x_max,y_max\n", "boxes.csv"));
  EXPECT_THAT(test_support::message_of([&] { litegpt_answer(l.at(0), 100, 100); }),
              HasSubstr("image img_x: no \"No finding\" label but no row in the annotations CSV"));
  EXPECT_THAT(test_support::message_of([&] {
                litegpt_labels(CsvTable::parse("image_id,COPD\nimg_x,1\n", "short.csv"),
                               CsvTable::parse("image_id,class_name,x_min,y_min,x_max,y_max\n", "boxes.csv"));
              }),
              HasSubstr("Lung tumor"));
}

}  // namespace
}  // namespace facet::data::vindr_cxr::test_litegpt_answers
