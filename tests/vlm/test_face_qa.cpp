// Face-MLLM's instruction data from a face dataset's labels (face_qa), and the vision-language
// data parts under experiments/data/vlm expanding and building on synthetic data in the published
// layouts (`facet data synth face_tasks`, `facet data synth vindr-cxr`).
#include "core/config.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace facet::data::test_face_qa {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test_support::message_of;

const fs::path kSource(test_support::kSourceDir);
const std::string kTokenizer = (kSource / "tests/fixtures/llm/tokenizer").string();

const fs::path& faces() {
  static const fs::path root = [] {
    const fs::path dir = test_support::scratch_dir("facet_test_vlmdata", "faces");
    return synth_registry()
        .create(Config::parse("name: face_tasks\ntrain: 4\nval: 2\nsize: 64\nmissing: 0\nseed: 3", "synth.yaml"), dir)
        .root;
  }();
  return root;
}

std::string yaml(const std::string& extra) {
  return "data:\n  name: face_qa\n  source: {name: face_tasks, root: " + faces().string() +
         "}\n  tokenizer: " + kTokenizer + "\n  image_size: 16\n" + extra;
}

TEST(FaceQa, QuestionsAndAnswersFollowTheSourceLabels) {
  const auto source = dataset_registry().create(
      Config::parse("data: {name: face_tasks, root: " + faces().string() + "}", "s.yaml").at("data"), "train");
  const auto qa = dataset_registry().create(
      Config::parse(yaml("  tasks: [expression, au, age, pose]\n  attribute_names: []\n"), "t.yaml").at("data"), "train");
  ASSERT_EQ(qa->size(), source->size() * 4);
  const std::vector<std::string> expressions = {"surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"};
  for (int64_t i = 0; i < source->size(); ++i) {
    const Sample src = source->get(i, 0);
    const Sample e = qa->get(4 * i, 0), au = qa->get(4 * i + 1, 0), age = qa->get(4 * i + 2, 0), pose = qa->get(4 * i + 3, 0);
    EXPECT_EQ(e.text.at("question"), "What is the facial expression of this person?");
    EXPECT_EQ(e.text.at("answer"), "The expression is " + expressions[size_t(src.fields.at("expression").item<int64_t>())] + ".");
    EXPECT_EQ(au.text.at("question"), "Which facial action units are active in this face?");
    const auto labels = src.fields.at("labels");
    const auto names = source->label_names();
    for (int64_t k = 0; k < labels.size(0); ++k) {
      const bool on = labels[k].item<float>() > 0.5f && src.fields.at("label_mask")[k].item<float>() > 0;
      // "AU1" must not match inside "AU12": look for the name followed by a non-digit.
      const std::string& a = au.text.at("answer");
      bool found = false;
      for (size_t at = a.find(names[size_t(k)]); at != std::string::npos; at = a.find(names[size_t(k)], at + 1))
        found = found || !std::isdigit(static_cast<unsigned char>(a[at + names[size_t(k)].size()]));
      EXPECT_EQ(found, on) << names[size_t(k)] << " in \"" << a << "\"";
    }
    EXPECT_EQ(age.text.at("answer"), fmt::format("About {} years old.", std::lround(src.fields.at("age").item<float>())));
    EXPECT_THAT(pose.text.at("answer"), HasSubstr(fmt::format("Yaw {},", std::lround(src.fields.at("pose")[0].item<float>()))));
    EXPECT_EQ(e.fields.at("image").sizes(), (std::vector<int64_t>{3, 16, 16}));
    EXPECT_EQ((e.fields.at("input_ids") == -200).sum().item<int64_t>(), 1);
  }
  // Caption mode: one description per image with every known label.
  const auto cap = dataset_registry().create(
      Config::parse(yaml("  mode: caption\n  attribute_names: [Eyeglasses, Mouth_Slightly_Open, Pale_Skin, Smiling, Wide_Face, Young]\n"),
                    "t.yaml").at("data"),
      "train");
  ASSERT_EQ(cap->size(), source->size());
  const Sample c = cap->get(0, 0);
  EXPECT_EQ(c.text.at("question"), "Describe this face.");
  EXPECT_THAT(c.text.at("answer"), HasSubstr("The expression is "));
  EXPECT_THAT(c.text.at("answer"), HasSubstr("The person is about "));
}

TEST(FaceQa, ErrorsNameTheKey) {
  EXPECT_THAT(message_of([&] {
                dataset_registry().create(Config::parse(yaml("  tasks: [gender]\n"), "t.yaml").at("data"), "train");
              }),
              HasSubstr("data.tasks: unknown task \"gender\""));
  EXPECT_THAT(message_of([&] {
                dataset_registry()
                    .create(Config::parse(yaml("  tasks: [attributes]\n  attribute_names: [A]\n"), "t.yaml").at("data"), "train")
                    ->get(0, 0);
              }),
              HasSubstr("the source gives 6 attributes but attribute_names lists 1"));
}

TEST(VlmDataParts, StageConfigsExpandAndBuild) {
  const fs::path vindr = test_support::scratch_dir("facet_test_vlmdata", "vindr");
  synth_registry().create(Config::parse("name: vindr-cxr\ntrain: 12\ntest: 2\nsize: 64", "synth.yaml"), vindr);
  const fs::path dir = kSource / "experiments/data/vlm";
  const std::vector<std::pair<std::string, std::vector<std::string>>> configs = {
      {"face_mllm_stage1_align.yaml", {"data.source.root=" + faces().string()}},
      {"face_mllm_stage3_face_tasks.yaml", {"data.source.root=" + faces().string()}},
      {"litegpt_stage1_grounded.yaml", {"data.root=" + vindr.string(), "data.val_fraction=0.34"}},
      {"litegpt_stage2_global.yaml", {"data.root=" + vindr.string(), "data.val_fraction=0.34"}},
  };
  for (const auto& [file, overrides] : configs) {
    SCOPED_TRACE(file);
    std::vector<std::string> o = overrides;
    o.push_back("data.tokenizer=" + kTokenizer);
    o.push_back("data.image_size=16");
    const Config c = Config::load(dir / file, o);
    const Config data = c.at("data");
    for (const std::string& split : {data.get<std::string>("train_split"), data.get<std::string>("eval_split")}) {
      const auto ds = dataset_registry().create(data, split);
      ASSERT_GT(ds->size(), 0);
      const Sample s = ds->get(0, 0);
      EXPECT_GT(s.fields.at("input_ids").size(0), 5);
      EXPECT_FALSE(s.text.at("answer").empty());
    }
  }
  // The other parts at least name registered datasets.
  for (const char* file : {"face_mllm_stage2_vqa.yaml", "emola_faba_au.yaml"})
    EXPECT_TRUE(dataset_registry().contains(Config::load(dir / file).at("data").get<std::string>("name"))) << file;
  fs::remove_all(vindr);
}

}  // namespace
}  // namespace facet::data::test_face_qa
