// Generated-text metrics against tools/golden/text_metrics_golden.py: sacrebleu's corpus BLEU and
// 13a tokens, rouge-score's ROUGE-L, sklearn's classification_report over LiteGPT's substring
// labels, LiteGPT's box hit rate and EmoLA's REGE (transcriptions of the reference evaluation
// code); then the registered metrics through update / records / merge / compute.
#include "metrics/metric.h"
#include "metrics/text_metrics.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace facet::metrics::test_text_metrics {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

const json& golden() {
  static const json j = json::parse(std::ifstream(std::filesystem::path(test_support::kSourceDir) / "tests/fixtures/text_metrics/expected.json"));
  return j;
}

TEST(TextMetrics, Tokenize13aMatchesSacrebleu) {
  const json& b = golden()["bleu"];
  std::vector<std::string> lines = b["hyps"].get<std::vector<std::string>>();
  for (const auto& r : b["refs"].get<std::vector<std::string>>()) lines.push_back(r);
  for (size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(text::tokenize_13a(lines[i]), b["tokens"][i].get<std::vector<std::string>>()) << lines[i];
}

TEST(TextMetrics, CorpusBleuMatchesSacrebleu) {
  const json& b = golden()["bleu"];
  const auto hyps = b["hyps"].get<std::vector<std::string>>(), refs = b["refs"].get<std::vector<std::string>>();
  const auto s = text::corpus_bleu(hyps, refs);
  EXPECT_NEAR(s.score, b["score"].get<double>(), 1e-9);
  EXPECT_NEAR(s.bp, b["bp"].get<double>(), 1e-12);
  EXPECT_EQ(s.sys_len, b["sys_len"].get<int64_t>());
  EXPECT_EQ(s.ref_len, b["ref_len"].get<int64_t>());
  for (size_t n = 0; n < 4; ++n) EXPECT_NEAR(s.precisions[n], b["precisions"][n].get<double>(), 1e-9);
  for (size_t i = 0; i < hyps.size(); ++i)
    EXPECT_NEAR(text::corpus_bleu({hyps[i]}, {refs[i]}).score, golden()["bleu_single"][i].get<double>(), 1e-9) << hyps[i];
}

TEST(TextMetrics, RougeLMatchesRougeScore) {
  const json& b = golden()["bleu"];
  for (size_t i = 0; i < b["hyps"].size(); ++i) {
    const auto s = text::rouge_l(b["refs"][i].get<std::string>(), b["hyps"][i].get<std::string>());
    const json& w = golden()["rouge_l"][i];
    EXPECT_NEAR(s.precision, w["precision"].get<double>(), 1e-12) << i;
    EXPECT_NEAR(s.recall, w["recall"].get<double>(), 1e-12) << i;
    EXPECT_NEAR(s.fmeasure, w["fmeasure"].get<double>(), 1e-12) << i;
  }
}

TEST(TextMetrics, LiteGptLabelsReportAndBoxesMatchTheReference) {
  const json& g = golden()["litegpt"];
  std::vector<std::vector<int>> truth, pred;
  for (size_t i = 0; i < g["pairs"].size(); ++i) {
    pred.push_back(text::litegpt_extract_labels(g["pairs"][i][0].get<std::string>()));
    truth.push_back(text::litegpt_extract_labels(g["pairs"][i][1].get<std::string>()));
    EXPECT_EQ(pred.back(), g["pred"][i].get<std::vector<int>>()) << i;
    EXPECT_EQ(truth.back(), g["truth"][i].get<std::vector<int>>()) << i;
  }
  const auto report = text::classification_report(truth, pred, text::litegpt_classes());
  for (const auto& [name, values] : g["report"].items()) {
    std::string key = name;
    if (name == "micro avg") key = "micro";
    else if (name == "macro avg") key = "macro";
    else if (name == "weighted avg") key = "weighted";
    else if (name == "samples avg") key = "samples";
    EXPECT_NEAR(report.at("precision/" + key), values["precision"].get<double>(), 1e-12) << name;
    EXPECT_NEAR(report.at("recall/" + key), values["recall"].get<double>(), 1e-12) << name;
    EXPECT_NEAR(report.at("f1/" + key), values["f1-score"].get<double>(), 1e-12) << name;
  }
  int64_t hits = 0, total = 0;
  for (const auto& p : g["pairs"]) {
    const auto [h, t] = text::litegpt_box_hits(p[0].get<std::string>(), p[1].get<std::string>());
    hits += h, total += t;
  }
  EXPECT_EQ(total, g["box_count"].get<int64_t>());
  EXPECT_NEAR(100.0 * double(hits) / double(total), g["box_hit_rate"].get<double>(), 1e-12);
  EXPECT_EQ(text::litegpt_remove_boxes("a <p>X</p> {<1><2><3><4>}, {<1><2><3>}"), "a <p>X</p> , {<1><2><3>}");
}

TEST(TextMetrics, RegeAuF1AndEmotionParserMatchEmoLA) {
  const json& g = golden()["rege_au"];
  const auto protocol = text::au_protocol("FABA");
  std::vector<std::vector<int>> truth, pred;
  for (const auto& c : g["cases"]) {
    pred.push_back(text::au_mentions(c[0].get<std::string>(), protocol.index));
    truth.push_back(text::au_label_string(c[1].get<std::string>(), protocol.index));
  }
  const auto [per_au, mean] = text::rege_au_f1(truth, pred, protocol);
  for (size_t k = 0; k < protocol.select.size(); ++k) {
    const json& w = g["f1"][std::to_string(protocol.select[k])];
    if (w.is_null()) EXPECT_FALSE(per_au[k].has_value()) << protocol.select[k];
    else EXPECT_NEAR(per_au[k].value_or(-1), w.get<double>(), 1e-9) << protocol.select[k];
  }
  EXPECT_NEAR(mean, g["mean"].get<double>(), 1e-9);
  const json& e = golden()["rege_emotion"];
  for (size_t i = 0; i < e["cases"].size(); ++i) {
    EXPECT_EQ(text::emotion_of_description(e["cases"][i][0].get<std::string>()), e["pred"][i].get<int>())
        << e["cases"][i][0].get<std::string>();
    EXPECT_EQ(text::emotion_label(e["cases"][i][1].get<std::string>()), e["truth"][i].get<int>());
  }
  EXPECT_EQ(text::emotion_label("joyful"), -1);
}

// A batch of reference texts and the outputs' generated ones.
std::pair<Outputs, data::Batch> batch(const std::vector<std::string>& generated, const std::vector<std::string>& refs,
                                      int64_t first_index, std::map<std::string, std::vector<std::string>> extra = {}) {
  Outputs o;
  o.text["generated"] = generated;
  data::Batch b;
  b.text = std::move(extra);
  b.text["answer"] = refs;
  b.indices = torch::arange(first_index, first_index + static_cast<int64_t>(refs.size()), torch::kInt64);
  return {o, b};
}

TEST(TextMetrics, RegisteredMetricsMergeRecordsAcrossRanks) {
  const json& b = golden()["bleu"];
  const auto hyps = b["hyps"].get<std::vector<std::string>>(), refs = b["refs"].get<std::vector<std::string>>();
  const Config node = Config::parse("name: bleu", "m.yaml");
  auto rank0 = metric_registry().create(node), rank1 = metric_registry().create(node);
  const size_t half = hyps.size() / 2;
  auto [o0, b0] = batch({hyps.begin(), hyps.begin() + long(half)}, {refs.begin(), refs.begin() + long(half)}, 0);
  auto [o1, b1] = batch({hyps.begin() + long(half), hyps.end()}, {refs.begin() + long(half), refs.end()}, long(half));
  rank0->update(o0, b0);
  rank1->update(o1, b1);
  const std::vector<std::string> all = {rank0->records(), rank1->records()};
  rank0->merge_records(all);
  EXPECT_NEAR(rank0->compute().at("bleu"), b["score"].get<double>(), 1e-9);

  auto rouge = metric_registry().create(Config::parse("name: rouge_l", "m.yaml"));
  rouge->merge_records(all);
  double f = 0;
  for (const auto& w : golden()["rouge_l"]) f += w["fmeasure"].get<double>();
  EXPECT_NEAR(rouge->compute().at("rouge_l/f"), f / double(hyps.size()), 1e-12);

  const json& g = golden()["rege_au"];
  std::vector<std::string> gen, labels;
  for (const auto& c : g["cases"]) gen.push_back(c[0]), labels.push_back(c[1]);
  auto rege = metric_registry().create(Config::parse("name: rege\ntask: au\nreference: answer", "m.yaml"));
  auto [o2, b2] = batch(gen, labels, 0, {{"label", labels}});
  rege->update(o2, b2);
  const auto r = rege->compute();
  EXPECT_NEAR(r.at("s_re"), g["mean"].get<double>(), 1e-9);
  EXPECT_NEAR(r.at("s_ge"), g["rouge_mean"].get<double>(), 1e-9);
  EXPECT_NEAR(r.at("s_rege"), r.at("s_re") + r.at("s_ge"), 1e-9);
  EXPECT_FALSE(r.count("f1/AU5"));  // left out as the reference leaves it out

  const json& l = golden()["litegpt"];
  std::vector<std::string> lp, lr;
  for (const auto& p : l["pairs"]) lp.push_back(p[0]), lr.push_back(p[1]);
  auto boxes = metric_registry().create(Config::parse("name: litegpt_boxes", "m.yaml"));
  auto classes = metric_registry().create(Config::parse("name: litegpt_classes", "m.yaml"));
  auto [o3, b3] = batch(lp, lr, 0);
  boxes->update(o3, b3);
  classes->update(o3, b3);
  EXPECT_NEAR(boxes->compute().at("box_hit_rate"), l["box_hit_rate"].get<double>(), 1e-12);
  EXPECT_NEAR(classes->compute().at("f1/micro"), l["report"]["micro avg"]["f1-score"].get<double>(), 1e-12);
}

TEST(TextMetrics, LiteGptClassesReadTheTruthFromTheDatasetsLabels) {
  // Truth from vindr_cxr_litegpt's finding_labels (28 image-level labels), as the reference reads
  // image_labels_test.csv, instead of from the reference text. Global classes: COPD, Lung tumor,
  // Pneumonia, Tuberculosis, Other disease, No finding, Finding.
  auto m = metric_registry().create(Config::parse("name: litegpt_classes\nclasses: global\ntruth_field: finding_labels", "m.yaml"));
  auto [o, b] = batch({"Global diseases of this chest radiograph are Pneumonia, COPD.",
                       "Global diseases of this chest radiograph are No finding."},
                      {"ignored", "ignored"}, 0);
  torch::Tensor truth = torch::zeros({2, 28});
  truth[0][24] = 1;  // Pneumonia
  truth[1][24] = 1;  // a missed Pneumonia
  b.fields["finding_labels"] = truth;
  m->update(o, b);
  const auto r = m->compute();
  EXPECT_DOUBLE_EQ(r.at("precision/Pneumonia"), 1.0);
  EXPECT_DOUBLE_EQ(r.at("recall/Pneumonia"), 0.5);
  EXPECT_DOUBLE_EQ(r.at("precision/COPD"), 0.0);
  EXPECT_DOUBLE_EQ(r.at("f1/Finding"), 2.0 / 3.0);  // truth: both abnormal; predicted: the first
  EXPECT_DOUBLE_EQ(r.at("recall/No finding"), 0.0);
  EXPECT_DOUBLE_EQ(r.at("support/Pneumonia"), 2.0);
}

TEST(TextMetrics, RecordsSurviveInvalidUtf8AndEmotionTask) {
  auto m = metric_registry().create(Config::parse("name: rege\ntask: emotion\nreference: answer", "m.yaml"));
  auto [o, b] = batch({"The person looks happy. \xe2\x82", "He is crying."}, {"A happy face.", "A sad face."}, 0,
                      {{"label", {"Happiness", "Sadness"}}});
  m->update(o, b);
  auto merged = metric_registry().create(Config::parse("name: rege\ntask: emotion\nreference: answer", "m.yaml"));
  merged->merge_records({m->records()});
  const auto r = merged->compute();
  EXPECT_DOUBLE_EQ(r.at("s_re"), 100.0);
  EXPECT_NEAR(r.at("s_ge"), 100.0 * (text::rouge_l("A happy face.", "The person looks happy. \xe2\x82").fmeasure +
                                     text::rouge_l("A sad face.", "He is crying.").fmeasure) / 2, 1e-9);
}

TEST(TextMetrics, ErrorsNameTheMissingText) {
  auto m = metric_registry().create(Config::parse("name: bleu\nprediction: answer_text", "m.yaml"));
  auto [o, b] = batch({"a"}, {"a"}, 0);
  EXPECT_THAT(test_support::message_of([&] { m->update(o, b); }),
              HasSubstr("metric bleu: the model's outputs have no text \"answer_text\" (have: generated)"));
  EXPECT_THAT(test_support::message_of([&] { metric_registry().create(Config::parse("name: rege\ntask: pose", "m.yaml")); }),
              HasSubstr("task: expected au or emotion, got \"pose\""));
}

}  // namespace
}  // namespace facet::metrics::test_text_metrics
