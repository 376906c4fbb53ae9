// Metrics of generated answers (formulas in text_metrics.h). The model's text arrives in
// Outputs::text[prediction] (one string per sample), the reference in Batch::text[reference];
// each keeps per-sample records (JSON lines keyed by dataset index), gathered over ranks, since
// none of these are sums.
//
//   metrics:
//     - {name: bleu, prediction: generated, reference: answer, strip_boxes: false}      # corpus BLEU, 0..100
//     - {name: rouge_l, prediction: generated, reference: answer}                       # mean P/R/F, 0..1
//     - {name: litegpt_classes, classes: combine}   # combine (29) | local (22) | global (7): P/R/F1 per class
//                                                   # + micro/macro/weighted/samples; truth from the
//                                                   # reference text, or from `truth_field` (e.g.
//                                                   # finding_labels, vindr_cxr_litegpt's 28 labels) when set
//     - {name: litegpt_boxes, threshold: 0.5}       # box hit rate x100 (a recall)
//     - {name: rege, task: au, dataset: FABA, label: label, reference: reference}   # S_re, S_ge, S_rege
#include "metrics/metric.h"
#include "metrics/text_metrics.h"

#include <nlohmann/json.hpp>

#include <numeric>

namespace facet::metrics {

namespace {

using json = nlohmann::json;

struct TextRecord {
  std::string prediction, reference;
  std::map<std::string, std::string> extra;  // other text fields the metric reads
  std::vector<float> truth;                   // a batch field's row, when the metric reads one
};

class TextRecordMetric : public Metric {
 public:
  TextRecordMetric(const Config& c, std::string default_reference, std::vector<std::string> extra_keys = {})
      : prediction_(c.get<std::string>("prediction", "generated")),
        reference_(c.get<std::string>("reference", default_reference)),
        truth_field_(c.get<std::string>("truth_field", "")),
        extra_keys_(std::move(extra_keys)) {}

  void update(const Outputs& outputs, const data::Batch& batch) override {
    const auto pred = outputs.text.find(prediction_);
    if (pred == outputs.text.end())
      fail("metric {}: the model's outputs have no text \"{}\" (have: {})", name(), prediction_, keys_of(outputs.text));
    const auto ref = batch.text.find(reference_);
    if (ref == batch.text.end())
      fail("metric {}: the batch has no text \"{}\" (have: {})", name(), reference_, keys_of(batch.text));
    const int64_t B = batch.size();
    if (static_cast<int64_t>(pred->second.size()) != B || static_cast<int64_t>(ref->second.size()) != B)
      fail("metric {}: {} generated and {} reference texts for a batch of {}", name(), pred->second.size(), ref->second.size(), B);
    torch::Tensor truth;
    if (!truth_field_.empty()) {
      if (!batch.fields.contains(truth_field_)) fail("metric {}: the batch has no field \"{}\"", name(), truth_field_);
      truth = batch.fields.at(truth_field_).to(torch::kCPU, torch::kFloat).reshape({B, -1}).contiguous();
    }
    for (int64_t i = 0; i < B; ++i) {
      TextRecord r{pred->second[size_t(i)], ref->second[size_t(i)], {}, {}};
      for (const auto& k : extra_keys_) {
        const auto it = batch.text.find(k);
        if (it == batch.text.end()) fail("metric {}: the batch has no text \"{}\" (have: {})", name(), k, keys_of(batch.text));
        r.extra[k] = it->second[size_t(i)];
      }
      if (truth.defined()) r.truth.assign(truth[i].data_ptr<float>(), truth[i].data_ptr<float>() + truth.size(1));
      records_[batch.indices[i].item<int64_t>()] = std::move(r);
    }
  }

  void reset() override { records_.clear(); }
  torch::Tensor state() const override { return torch::zeros({0}, torch::kDouble); }
  void load_state(const torch::Tensor&) override {}

  std::string records() const override {
    std::string out;
    for (const auto& [i, r] : records_)
      // A generated answer need not be valid UTF-8 (a token may end inside a character): such bytes
      // travel as U+FFFD rather than stopping the evaluation.
      out += json{{"i", i}, {"p", r.prediction}, {"r", r.reference}, {"x", r.extra}, {"t", r.truth}}.dump(
                 -1, ' ', false, json::error_handler_t::replace) +
             "\n";
    return out;
  }

  void merge_records(const std::vector<std::string>& per_rank) override {
    records_.clear();
    for (const auto& text : per_rank) {
      size_t start = 0;
      while (start < text.size()) {
        const size_t end = text.find('\n', start);
        const json j = json::parse(text.substr(start, end - start));
        records_[j["i"].get<int64_t>()] = {j["p"].get<std::string>(), j["r"].get<std::string>(),
                                           j["x"].get<std::map<std::string, std::string>>(), j["t"].get<std::vector<float>>()};
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
  }

 protected:
  virtual std::string name() const = 0;
  static std::string keys_of(const std::map<std::string, std::vector<std::string>>& m) {
    std::string s;
    for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
    return s.empty() ? "none" : s;
  }

  std::string prediction_, reference_, truth_field_;
  std::vector<std::string> extra_keys_;
  std::map<int64_t, TextRecord> records_;
};

class Bleu : public TextRecordMetric {
 public:
  explicit Bleu(const Config& c) : TextRecordMetric(c, "answer"), strip_(c.get<bool>("strip_boxes", false)) {}
  std::map<std::string, double> compute() const override {
    std::vector<std::string> hyp, ref;
    for (const auto& [i, r] : records_) {
      hyp.push_back(strip_ ? text::litegpt_remove_boxes(r.prediction) : r.prediction);
      ref.push_back(strip_ ? text::litegpt_remove_boxes(r.reference) : r.reference);
    }
    const auto s = text::corpus_bleu(hyp, ref);
    return {{"bleu", s.score}, {"bleu/bp", s.bp}};
  }

 private:
  std::string name() const override { return "bleu"; }
  bool strip_;
};

class RougeL : public TextRecordMetric {
 public:
  explicit RougeL(const Config& c) : TextRecordMetric(c, "answer"), strip_(c.get<bool>("strip_boxes", false)) {}
  std::map<std::string, double> compute() const override {
    double p = 0, r = 0, f = 0;
    for (const auto& [i, rec] : records_) {
      const auto s = text::rouge_l(strip_ ? text::litegpt_remove_boxes(rec.reference) : rec.reference,
                                   strip_ ? text::litegpt_remove_boxes(rec.prediction) : rec.prediction);
      p += s.precision, r += s.recall, f += s.fmeasure;
    }
    const double n = static_cast<double>(std::max<size_t>(records_.size(), 1));
    return {{"rouge_l/precision", p / n}, {"rouge_l/recall", r / n}, {"rouge_l/f", f / n}};
  }

 private:
  std::string name() const override { return "rouge_l"; }
  bool strip_;
};

class LiteGptClasses : public TextRecordMetric {
 public:
  explicit LiteGptClasses(const Config& c) : TextRecordMetric(c, "answer"), classes_(c.get<std::string>("classes", "combine")) {
    if (classes_ != "combine" && classes_ != "local" && classes_ != "global")
      fail("{}: {}: expected combine, local or global, got \"{}\"", c.where("classes"), c.full_key("classes"), classes_);
  }
  std::map<std::string, double> compute() const override {
    const auto& all = text::litegpt_classes();
    const size_t lo = classes_ == "global" ? 22 : 0, hi = classes_ == "local" ? 22 : all.size();
    std::vector<std::string> names(all.begin() + long(lo), all.begin() + long(hi));
    std::vector<std::vector<int>> truth, pred;
    for (const auto& [i, r] : records_) {
      const auto p = text::litegpt_extract_labels(r.prediction);
      std::vector<int> t;
      if (r.truth.empty()) {
        t = text::litegpt_extract_labels(r.reference);
      } else {
        // The 28 image-level labels (22 local, 6 global) as in image_labels_test.csv; "Finding" = not normal.
        if (r.truth.size() != 28) fail("metric litegpt_classes: truth field \"{}\" has {} values, expected the 28 VinDr-CXR labels", truth_field_, r.truth.size());
        for (float v : r.truth) t.push_back(v > 0.5f);
        t.push_back(1 - t[27]);
      }
      truth.emplace_back(t.begin() + long(lo), t.begin() + long(hi));
      pred.emplace_back(p.begin() + long(lo), p.begin() + long(hi));
    }
    return text::classification_report(truth, pred, names);
  }

 private:
  std::string name() const override { return "litegpt_classes"; }
  std::string classes_;
};

class LiteGptBoxes : public TextRecordMetric {
 public:
  explicit LiteGptBoxes(const Config& c)
      : TextRecordMetric(c, "answer"), threshold_(c.get_in_range<double>("threshold", 0.5, Range::closed(0, 1))) {}
  std::map<std::string, double> compute() const override {
    int64_t hits = 0, total = 0;
    for (const auto& [i, r] : records_) {
      const auto [h, t] = text::litegpt_box_hits(r.prediction, r.reference, threshold_);
      hits += h, total += t;
    }
    return {{"box_hit_rate", total ? 100.0 * double(hits) / double(total) : 0.0}, {"box_count", double(total)}};
  }

 private:
  std::string name() const override { return "litegpt_boxes"; }
  double threshold_;
};

class Rege : public TextRecordMetric {
 public:
  explicit Rege(const Config& c)
      : TextRecordMetric(c, "reference", {c.get<std::string>("label", "label")}),
        task_(c.get<std::string>("task")),
        label_(c.get<std::string>("label", "label")) {
    if (task_ != "au" && task_ != "emotion")
      fail("{}: {}: expected au or emotion, got \"{}\"", c.where("task"), c.full_key("task"), task_);
    const std::string dataset = c.get<std::string>("dataset", "FABA");
    try {
      protocol_ = text::au_protocol(dataset);
    } catch (const std::invalid_argument&) {
      fail("{}: {}: expected FABA, BP4D, DISFA, EmotioNet or GFT, got \"{}\"", c.where("dataset"), c.full_key("dataset"), dataset);
    }
  }
  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    double rouge = 0;
    std::vector<std::vector<int>> truth, pred;
    int64_t correct = 0;
    for (const auto& [i, r] : records_) {
      rouge += text::rouge_l(r.reference, r.prediction).fmeasure;
      const std::string& label = r.extra.at(label_);
      if (task_ == "au") {
        truth.push_back(text::au_label_string(label, protocol_.index));
        pred.push_back(text::au_mentions(r.prediction, protocol_.index));
      } else {
        const int t = text::emotion_label(label);
        if (t < 0) fail("metric rege: sample {}: emotion label \"{}\" is neither an integer nor an emotion name", i, label);
        correct += text::emotion_of_description(r.prediction) == t;
      }
    }
    const double n = static_cast<double>(std::max<size_t>(records_.size(), 1));
    double re = 0;
    if (task_ == "au") {
      const auto [per_au, mean] = text::rege_au_f1(truth, pred, protocol_);
      for (size_t k = 0; k < per_au.size(); ++k)
        if (per_au[k]) out["f1/AU" + std::to_string(protocol_.select[k])] = *per_au[k];
      re = std::isnan(mean) ? 0.0 : mean;
    } else {
      re = 100.0 * double(correct) / n;
    }
    out["s_re"] = re;
    out["s_ge"] = 100.0 * rouge / n;
    out["s_rege"] = re + 100.0 * rouge / n;
    return out;
  }

 private:
  std::string name() const override { return "rege"; }
  std::string task_, label_;
  text::AuProtocol protocol_;
};

FACET_REGISTER(metric_registry(), "bleu", "Corpus BLEU of generated text (sacrebleu's defaults, 13a tokenizer), 0..100",
               [](const Config& c) { return std::make_shared<Bleu>(c); });
FACET_REGISTER(metric_registry(), "rouge_l", "ROUGE-L precision/recall/F of generated text (rouge-score), mean over samples",
               [](const Config& c) { return std::make_shared<RougeL>(c); });
FACET_REGISTER(metric_registry(), "litegpt_classes",
               "LiteGPT: per-class P/R/F1 of VinDr-CXR findings parsed from generated text by substring match",
               [](const Config& c) { return std::make_shared<LiteGptClasses>(c); });
FACET_REGISTER(metric_registry(), "litegpt_boxes",
               "LiteGPT: share of reference boxes hit by a generated box of the same class (IoU > 0.5, 0-100 grid, +1)",
               [](const Config& c) { return std::make_shared<LiteGptBoxes>(c); });
FACET_REGISTER(metric_registry(), "rege",
               "FABA-Bench REGE: AU F1 or emotion accuracy parsed from generated text, plus ROUGE-L F",
               [](const Config& c) { return std::make_shared<Rege>(c); });

}  // namespace
}  // namespace facet::metrics
