// The instruction datasets (llava_instruct, faba_instruct, vindr_cxr_litegpt), their padded
// collation, the length-grouped sampler and the .npy reader, on fixtures written by
// tools/golden/faba_instruct_golden.py (numpy's own .npy writer) and litegpt_answers_golden.py.
#include "core/config.h"
#include "core/csv.h"
#include "data/dataset.h"
#include "data/instruct/length_grouped.h"
#include "data/instruct/vlm_data.h"
#include "data/loader.h"
#include "data/npy.h"
#include "data/synth.h"
#include "data/text/tokenizer.h"
#include "data/vindr_cxr/litegpt_answers.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <set>

namespace facet::data::test_instruct_data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;
using test_support::message_of;

const fs::path kSource(test_support::kSourceDir);
const fs::path kFaba = kSource / "tests/fixtures/faba_instruct";
const fs::path kTokenizer = kSource / "tests/fixtures/llm/tokenizer";

std::shared_ptr<Dataset> open(const std::string& yaml, const std::string& split) {
  return dataset_registry().create(Config::parse(yaml, "test.yaml").at("data"), split);
}

std::string faba_yaml(const std::string& extra = "") {
  return "data:\n  name: faba_instruct\n  root: " + kFaba.string() + "\n  task: au\n  tokenizer: " + kTokenizer.string() +
         "\n  image_size: 16\n" + extra;
}

int64_t count(const torch::Tensor& t, int64_t value) { return (t == value).sum().item<int64_t>(); }

// The supervised tokens of a sample, decoded.
std::string supervised_text(const text::Tokenizer& tok, const torch::Tensor& labels) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < labels.size(0); ++i)
    if (labels[i].item<int64_t>() != kIgnoreIndex) ids.push_back(labels[i].item<int64_t>());
  return tok.decode(ids);
}

TEST(Npy, ReadsWhatNumpyWrites) {
  const json want = json::parse(std::ifstream(kFaba / "expected.json"));
  const NpyArray a = read_npy(kFaba / "train/landmarks/a.npy");
  EXPECT_EQ(a.dtype, "<f4");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{212}));
  EXPECT_EQ(a.values, want["a"].get<std::vector<double>>());
  const NpyArray b = read_npy(kFaba / "train/landmarks/b.npy");
  EXPECT_EQ(b.dtype, "<f8");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 212}));
  EXPECT_EQ(b.values, want["b"].get<std::vector<double>>());
  const NpyArray v2 = read_npy(kFaba / "npy/v2.npy");
  EXPECT_EQ(v2.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(v2.values, (std::vector<double>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(read_npy(kFaba / "npy/empty.npy").shape, (std::vector<int64_t>{0, 3}));
}

TEST(Npy, RefusesWhatItCannotReadNamingTheFile) {
  const auto dir = kFaba / "npy";
  EXPECT_THAT(message_of([&] { read_npy(dir / "fortran.npy"); }), HasSubstr("fortran.npy: Fortran-order"));
  EXPECT_THAT(message_of([&] { read_npy(dir / "int32.npy"); }), HasSubstr("int32.npy: .npy dtype '<i4' is not supported"));
  EXPECT_THAT(message_of([&] { read_npy(dir / "truncated.npy"); }), HasSubstr("truncated.npy: .npy data holds 844 bytes"));
  EXPECT_THAT(message_of([&] { parse_npy("\x93NUMPY", "x.npy"); }), HasSubstr("x.npy: not a .npy file"));
  EXPECT_THAT(message_of([&] { parse_npy(std::string("\x93NUMPY\x01\x00\xff\x00{", 11), "x.npy"); }),
              HasSubstr("x.npy: .npy header length 255 exceeds the file"));
  EXPECT_THAT(message_of([&] { vlm::read_landmark_vector(dir / "short.npy", 212); }),
              HasSubstr("short.npy: expected a landmark vector of 212 values (EmoLA's 106 x 2 prior), got shape (210)"));
  EXPECT_EQ(vlm::read_landmark_vector(kFaba / "train/landmarks/b.npy", 212).sizes(), (std::vector<int64_t>{212}));
}

TEST(FabaInstruct, TrainSamplesAsLlavaEncodesThem) {
  const auto ds = open(faba_yaml(), "train");
  ASSERT_EQ(ds->size(), 2);
  const auto tok = text::Tokenizer::load(kTokenizer);
  const Sample s = ds->get(0, 0);
  EXPECT_EQ(s.fields.at("image").sizes(), (std::vector<int64_t>{3, 16, 16}));
  const json want = json::parse(std::ifstream(kFaba / "expected.json"));
  const auto lm = s.fields.at("landmarks");
  ASSERT_EQ(lm.sizes(), (std::vector<int64_t>{212}));
  EXPECT_FLOAT_EQ(lm[5].item<float>(), static_cast<float>(want["a"][5].get<double>()));
  const auto ids = s.fields.at("input_ids");
  EXPECT_EQ(count(ids, -200), 1);  // one placeholder per image
  EXPECT_EQ(ids[0].item<int64_t>(), tok.bos_id);
  EXPECT_EQ(s.fields.at("attention_mask").sizes(), ids.sizes());
  // The image marker moved to the start of the turn (LLaVA's preprocess_multimodal).
  EXPECT_EQ(s.text.at("prompt"), text::kVicunaSystem + " USER: <image>\nWhich AUs are active in this face? ASSISTANT:");
  EXPECT_EQ(s.text.at("question"), "Which AUs are active in this face?");
  EXPECT_EQ(s.text.at("answer"), "AU6 and AU12 are active, a smile.");
  // Loss only on the answer and its EOS.
  const auto labels = s.fields.at("labels");
  EXPECT_EQ(labels[labels.size(0) - 1].item<int64_t>(), tok.eos_id);
  EXPECT_EQ(supervised_text(tok, labels), "AU6 and AU12 are active, a smile.");
  // The prompt is the conversation up to the answer.
  const auto prompt = s.fields.at("prompt_ids");
  EXPECT_TRUE(torch::equal(prompt, ids.narrow(0, 0, prompt.size(0))));
  EXPECT_EQ(count(labels.narrow(0, 0, prompt.size(0)), kIgnoreIndex), prompt.size(0));
  // Both answers of a two-round conversation are supervised.
  const Sample b = ds->get(1, 0);
  EXPECT_EQ(supervised_text(tok, b.fields.at("labels")), "The brows are raised: AU1, AU2. No.");
  EXPECT_EQ(b.text.at("question"), "Anything else?");
}

TEST(FabaInstruct, PadToSquareInTrainingCropInEvaluation) {
  // Image a is 10 x 6: padded to 10 x 10 with the mean colour, its corner normalises to 0.
  const auto padded = open(faba_yaml(), "train")->get(0, 0).fields.at("image");
  EXPECT_LT(padded.select(2, 0).select(1, 0).abs().max().item<float>(), 1e-4);
  const auto cropped = open(faba_yaml("  train_image_mode: crop\n"), "train")->get(0, 0).fields.at("image");
  EXPECT_GT(cropped.select(2, 0).select(1, 0).abs().max().item<float>(), 1e-2);
  // Evaluation: no conversation in the file; EmoLA's question, the GPT-4 reference as the answer.
  const auto eval = open(faba_yaml(), "test");
  ASSERT_EQ(eval->size(), 1);
  const Sample e = eval->get(0, 0);
  EXPECT_EQ(e.text.at("question"), "What AUs are conveyed by this face?");
  EXPECT_EQ(e.text.at("label"), "1, 2, 4");
  EXPECT_EQ(e.text.at("reference"), "The inner and outer brows are raised (AU1, AU2) and lowered (AU4).");
  EXPECT_EQ(e.text.at("answer"), e.text.at("reference"));
  const auto eval_pad = open(faba_yaml("  eval_image_mode: pad\n"), "test")->get(0, 0).fields.at("image");
  EXPECT_LT(eval_pad.select(2, 0).select(1, 0).abs().max().item<float>(), 1e-4);
  EXPECT_GT(e.fields.at("image").select(2, 0).select(1, 0).abs().max().item<float>(), 1e-2);
}

// `facet data synth faba`: FABA-Instruct's layout as faba_instruct reads it, the landmark prior as
// 212 float32 values in -1..1 (through write_npy and back through the .npy reader), each evaluation
// label the AU list its reference answer names, the emotion task beside it.
TEST(FabaSynth, WritesWhatFabaInstructReads) {
  const fs::path dir = test_support::scratch_dir("facet_test_vlmdata", "faba_synth");
  const auto r = synth_registry().create(Config::parse("name: faba\ntrain: 6\neval: 5\nsize: 48\nseed: 4", "s.yaml"), dir);
  EXPECT_THAT(r.summary, HasSubstr("6 train + 5 eval faces"));
  const std::string yaml = "data:\n  name: faba_instruct\n  root: " + r.root.string() + "\n  tokenizer: " +
                           kTokenizer.string() + "\n  image_size: 16\n";
  const auto train = open(yaml + "  task: au\n", "train");
  ASSERT_EQ(train->size(), 6);
  const Sample s = train->get(0, 0);
  EXPECT_EQ(s.text.at("question"), "What AUs are conveyed by this face?");
  EXPECT_THAT(s.text.at("answer"), ::testing::StartsWith("The face shows "));
  const auto lm = s.fields.at("landmarks");
  ASSERT_EQ(lm.sizes(), (std::vector<int64_t>{212}));
  EXPECT_LE(lm.abs().max().item<float>(), 1.0f);
  EXPECT_GT(lm.std().item<float>(), 0.1f);
  const NpyArray raw = read_npy(r.root / "train/landmarks/train_00000.npy");
  EXPECT_EQ(raw.dtype, "<f4");
  EXPECT_EQ(raw.shape, (std::vector<int64_t>{212}));
  EXPECT_FLOAT_EQ(static_cast<float>(raw.values[7]), lm[7].item<float>());
  const auto eval = open(yaml + "  task: au\n", "test");
  ASSERT_EQ(eval->size(), 5);
  int64_t with_aus = 0;
  for (int64_t i = 0; i < eval->size(); ++i) {
    const Sample e = eval->get(i, 0);
    std::string named;  // the AU numbers the reference names, "1, 2, 26"
    const std::string& ref = e.text.at("reference");
    for (size_t at = ref.find("AU"); at != std::string::npos; at = ref.find("AU", at + 2)) {
      size_t end = at + 2;
      while (end < ref.size() && std::isdigit(static_cast<unsigned char>(ref[end]))) ++end;
      named += (named.empty() ? "" : ", ") + ref.substr(at + 2, end - at - 2);
    }
    EXPECT_EQ(e.text.at("label"), named) << ref;
    with_aus += !named.empty();
  }
  EXPECT_GT(with_aus, 0);
  const auto emotion = open(yaml + "  task: emotion\n", "test");
  EXPECT_THAT(emotion->get(0, 0).text.at("reference"), ::testing::StartsWith("This face conveys "));
  EXPECT_THAT(message_of([&] { synth_registry().create(Config::parse("name: faba\neval: 0", "s.yaml"), dir / "x"); }),
              HasSubstr("expected at least 1 image each"));
  fs::remove_all(dir);
}

TEST(FabaInstruct, ErrorsNameTheKeyOrFile) {
  EXPECT_THAT(message_of([&] { open(faba_yaml("  train_image_mode: squash\n"), "train"); }),
              HasSubstr("data.train_image_mode: expected pad, crop or resize, got \"squash\""));
  EXPECT_THAT(message_of([&] {
                open("data:\n  name: faba_instruct\n  root: " + kFaba.string() + "\n  task: pose\n  tokenizer: " +
                         kTokenizer.string() + "\n",
                     "train");
              }),
              HasSubstr("data.task: expected au or emotion, got \"pose\""));
  EXPECT_THAT(message_of([&] { open(faba_yaml("  landmark_dim: 210\n"), "train")->get(0, 0); }),
              HasSubstr("a.npy: expected a landmark vector of 210 values"));
  EXPECT_EQ(message_of([&] { open(faba_yaml(), "train")->get(0, 0); }), "(no error)");
}

TEST(LlavaInstruct, CollatesPaddedBatches) {
  const std::string yaml = "data:\n  name: llava_instruct\n  annotations: {train: " +
                           (kFaba / "train/train_au_anno.json").string() + "}\n  image_root: " +
                           (kFaba / "train").string() + "\n  tokenizer: " + kTokenizer.string() +
                           "\n  image_size: 8\n  landmarks: true\n  pad: eos\n  image_token_id: 32000\n";
  const auto ds = open(yaml, "train");
  std::vector<Sample> samples = {ds->get(0, 0), ds->get(1, 0)};
  const int64_t t0 = samples[0].fields.at("input_ids").size(0), t1 = samples[1].fields.at("input_ids").size(0);
  const int64_t p0 = samples[0].fields.at("prompt_ids").size(0), p1 = samples[1].fields.at("prompt_ids").size(0);
  ASSERT_NE(t0, t1);
  EXPECT_EQ(count(samples[0].fields.at("input_ids"), 32000), 1);  // the configured placeholder id
  const Batch b = collate(std::move(samples), {0, 1}, ds->padding());
  const int64_t T = std::max(t0, t1), P = std::max(p0, p1);
  EXPECT_EQ(b.fields.at("input_ids").sizes(), (std::vector<int64_t>{2, T}));
  EXPECT_EQ(b.fields.at("image").sizes(), (std::vector<int64_t>{2, 3, 8, 8}));
  EXPECT_EQ(b.fields.at("landmarks").sizes(), (std::vector<int64_t>{2, 212}));
  const int64_t short_row = t0 < t1 ? 0 : 1, short_len = std::min(t0, t1);
  const auto row = [&](const char* key) { return b.fields.at(key)[short_row]; };
  EXPECT_EQ(count(row("input_ids").narrow(0, short_len, T - short_len), 2), T - short_len);  // eos pads
  EXPECT_EQ(count(row("labels").narrow(0, short_len, T - short_len), kIgnoreIndex), T - short_len);
  EXPECT_EQ(row("attention_mask").sum().item<int64_t>(), short_len);
  // Prompts pad on the left, for batched generation.
  const int64_t short_p = p0 < p1 ? 0 : 1;
  EXPECT_EQ(b.fields.at("prompt_attention_mask")[short_p][0].item<int64_t>(), 0);
  EXPECT_EQ(b.fields.at("prompt_attention_mask")[short_p][P - 1].item<int64_t>(), 1);
  EXPECT_EQ(b.fields.at("prompt_ids").size(1), P);
}

TEST(LlavaInstruct, TextOnlyRecordsAndMissingTextKeysStayAligned) {
  const fs::path dir = test_support::scratch_dir("facet_test_vlmdata", "llava");
  std::ofstream(dir / "a.json") << R"([
    {"id": 1, "image": ")" << (kFaba / "train/images/a.png").string() << R"(", "label": "6, 12",
     "conversations": [{"from": "human", "value": "<image>\nAUs?"}, {"from": "gpt", "value": "AU6, AU12."}]},
    {"id": 2, "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]}])";
  const auto ds = open("data:\n  name: llava_instruct\n  annotations: " + (dir / "a.json").string() + "\n  tokenizer: " +
                           kTokenizer.string() + "\n  image_size: 8\n",
                       "train");
  const Batch b = collate({ds->get(0, 0), ds->get(1, 0)}, {0, 1}, ds->padding());
  EXPECT_EQ(b.text.at("label"), (std::vector<std::string>{"6, 12", ""}));
  EXPECT_EQ(b.text.at("answer"), (std::vector<std::string>{"AU6, AU12.", "Hi."}));
  EXPECT_EQ(count(b.fields.at("input_ids")[1], -200), 0);  // text-only: no placeholder, a zero image
  EXPECT_EQ(b.fields.at("image")[1].abs().sum().item<float>(), 0.f);
  // LLaVA's modality lengths: words over the turns, negative without an image.
  EXPECT_EQ(dynamic_cast<const vlm::ModalityLengths&>(*ds).modality_lengths(), (std::vector<int64_t>{4, -3}));
  fs::remove_all(dir);
}

TEST(LengthGrouped, MegaBatchesSortedByLengthModalitiesApart) {
  // 10 image samples (positive lengths) and 5 text-only (negative).
  std::vector<int64_t> lengths;
  for (int i = 0; i < 10; ++i) lengths.push_back(10 + (i * 7) % 13);
  for (int i = 0; i < 5; ++i) lengths.push_back(-(5 + i * 3));
  LengthGroupedSampler s(15, 3, true);
  s.set_batch_size(4);
  EXPECT_THAT(message_of([&] { s.epoch_order(0); }), HasSubstr("must be attached to its dataset"));
  s.set_lengths(lengths);
  const auto order = s.epoch_order(0);
  ASSERT_EQ(order.size(), 15u);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 15u);
  // Full mega-batches: 2 of images, 1 of text; then the remainders (2 images + 1 text) by index.
  for (size_t mb = 0; mb < 3; ++mb) {
    const bool image = lengths[static_cast<size_t>(order[mb * 4])] > 0;
    for (size_t k = 0; k < 4; ++k) {
      const int64_t l = lengths[static_cast<size_t>(order[mb * 4 + k])];
      EXPECT_EQ(l > 0, image) << "mega-batch " << mb << " mixes modalities";
      if (k > 0) {
        EXPECT_GE(std::abs(lengths[static_cast<size_t>(order[mb * 4 + k - 1])]), std::abs(l));
      }
    }
  }
  EXPECT_TRUE(std::is_sorted(order.begin() + 12, order.end()));
  EXPECT_EQ(order, s.epoch_order(0));  // a function of (seed, epoch)
  EXPECT_NE(order, s.epoch_order(1));
  // Attached to a dataset that reports its lengths.
  LengthGroupedSampler attached(2, 0, true);
  attached.attach(*open(faba_yaml(), "train"));
  EXPECT_EQ(attached.epoch_order(0).size(), 2u);
  EXPECT_THAT(message_of([&] { attached.set_lengths({3, 0}); }), HasSubstr("sample 1 has length 0"));
}

TEST(LengthGrouped, TheLoaderAttachesItToItsDatasetAndBatchesPad) {
  const auto ds = open(faba_yaml(), "train");
  auto sampler = sampler_registry().create(Config::parse("name: length_grouped", "s.yaml"), ds->size(), 5);
  sampler->set_batch_size(2);
  LoaderOptions o;
  o.batch_size = 2;
  o.workers = 1;
  Loader loader(ds, sampler, o);
  loader.start_epoch(0);
  const auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->size(), 2);
  // Longest first within the mega-batch: sample 0 has 15 words, sample 1 14 (in two rounds).
  EXPECT_EQ(dynamic_cast<const vlm::ModalityLengths&>(*ds).modality_lengths(), (std::vector<int64_t>{15, 14}));
  EXPECT_EQ(b->indices[0].item<int64_t>(), 0);
  EXPECT_EQ(b->fields.at("input_ids").size(0), 2);
  EXPECT_FALSE(loader.next().has_value());
}

TEST(VinDrCxrLiteGpt, SamplesCarryTheReferenceAnswersAndTheMiniGptTemplate) {
  const fs::path root = test_support::scratch_dir("facet_test_vlmdata", "litegpt");
  const fs::path fixture = kSource / "tests/fixtures/litegpt_answers";
  fs::copy(fixture / "annotations", root / "annotations");
  const CsvTable sizes = CsvTable::read(fixture / "sizes.csv");
  for (const char* split : {"train", "test"}) fs::create_directories(root / split);
  for (size_t r = 0; r < sizes.rows(); ++r) {
    const std::string id = sizes.cell(r, 0);
    const cv::Mat img(static_cast<int>(sizes.number(r, 2)), static_cast<int>(sizes.number(r, 1)), CV_8UC1, cv::Scalar(90));
    cv::imwrite((root / (id.rfind("img_t", 0) == 0 ? "test" : "train") / (id + ".png")).string(), img);
  }
  const std::string yaml = "data:\n  name: vindr_cxr_litegpt\n  root: " + root.string() +
                           "\n  image_format: png\n  tokenizer: " + kTokenizer.string() + "\n  image_size: 16\n";
  const auto ds = open(yaml + "  prompt_pool: first\n", "train");
  ASSERT_EQ(ds->size(), 5);
  const auto labels = vindr_cxr::litegpt_labels(CsvTable::read(root / "annotations/image_labels_train.csv"),
                                                CsvTable::read(root / "annotations/annotations_train.csv"));
  const Sample b = ds->get(1, 0);
  EXPECT_EQ(b.text.at("image_id"), "img_b");
  EXPECT_EQ(b.text.at("answer"), vindr_cxr::litegpt_answer(labels[1], 800, 1000).grounded);
  EXPECT_EQ(b.fields.at("image").sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_EQ(count(b.fields.at("input_ids"), -200), 1);
  // img_b's 28 labels, the union of its three readers: Nodule/Mass, Pleural effusion, Aortic
  // enlargement, COPD, Lung tumor, Other diseases, Tuberculosis.
  const auto l28 = b.fields.at("finding_labels");
  ASSERT_EQ(l28.size(0), 28);
  std::vector<int64_t> on;
  for (int64_t i = 0; i < 28; ++i)
    if (l28[i].item<float>() > 0) on.push_back(i);
  EXPECT_EQ(on, (std::vector<int64_t>{0, 15, 16, 22, 23, 25, 26}));
  EXPECT_EQ(b.text.at("prompt"), "<s>[INST] <Img><ImageHere></Img> " + vindr_cxr::kLiteGptGroundingPrompts[0] + "  [/INST]");
  const auto tok = text::Tokenizer::load(kTokenizer);
  EXPECT_EQ(supervised_text(tok, b.fields.at("labels")), b.text.at("answer"));
  EXPECT_EQ(b.fields.at("labels")[-1].item<int64_t>(), tok.eos_id);  // end_sym </s>
  // Training draws the prompt from the pool per (seed, index); evaluation keeps the first.
  std::set<std::string> prompts;
  const auto pooled = open(yaml, "train");
  for (uint64_t seed = 0; seed < 8; ++seed) prompts.insert(pooled->get(0, seed).text.at("question"));
  EXPECT_GT(prompts.size(), 2u);
  // Stage 2 / evaluation: the global sentence, the [vqa] question.
  const auto test = open(yaml + "  answer: global\n  prompt: vqa\n", "test");
  const Sample t = test->get(1, 0);
  EXPECT_EQ(t.text.at("answer"), "Global diseases of this chest radiograph are No finding.");
  EXPECT_EQ(t.text.at("question"), vindr_cxr::kLiteGptVqaPrompt);
  const Sample t1 = open(yaml, "test")->get(0, 0);
  EXPECT_EQ(t1.text.at("answer"),
            "Global diseases of this chest radiograph are Other diseases. Local diseases of this chest radiograph are "
            "<p>Pneumothorax</p> {<70><10><90><50>},<p>Rib fracture</p> {<5><6><7><8>}.");
  // LiteGPT's pad token by string (tokenizer.pad_token = "$$"): that piece's id, unk where the
  // vocabulary has none (this one has no "$$"; transformers gives 0 too); a piece it has, its id.
  EXPECT_EQ(open(yaml + "  pad: \"$$\"\n", "train")->padding().at("input_ids").value, 0.0);
  EXPECT_EQ(open(yaml + "  pad: er\n", "train")->padding().at("prompt_ids").value, 260.0);
  EXPECT_THAT(message_of([&] { open(yaml + "  answer: boxes\n", "train"); }),
              HasSubstr("data.answer: expected one of grounded, global, local, got \"boxes\""));
  fs::remove_all(root);
}

}  // namespace
}  // namespace facet::data::test_instruct_data
