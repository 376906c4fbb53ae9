// Metrics of generated text, written natively and checked against the reference libraries
// (tools/golden/text_metrics_golden.py):
//   BLEU     sacrebleu's corpus_bleu with its defaults: 13a tokenizer, 4-grams, "exp" smoothing,
//            closest reference length, no effective order; 0..100
//   ROUGE-L  rouge-score's RougeScorer(["rougeL"]) without stemming: lowercase, [a-z0-9]+ tokens,
//            LCS precision / recall / F; 0..1
//   LiteGPT  (LiteGPT `medlvlm/modules/compute_metrics.py`, medical.md §1.6): class labels by
//            lowercase substring match after stripping <...> tags ("Finding" = no "no finding"), and
//            the box hit rate: a reference box counts when a predicted box of the same class string
//            has IoU > 0.5 on the 0-100 grid with the +1 convention
//   REGE     FABA-Bench (EmoLA `eval_FABA.py`, face.md §1.7): AU F1 from "AU<n>" mentions against the
//            "1, 2, 4" label, averaged over the dataset's AUs (an AU whose truth and predictions are
//            all one value is left out, as sklearn's 1x1 confusion matrix makes the reference skip
//            it); emotion by the keyword parser with the negation rule and synonym lists; plus
//            ROUGE-L F. S_rege = S_re + S_ge, both x100.
//            Choice: the reference's ROUGE comes from the `rouge` package (not installable here);
//            Facet uses rouge-score's ROUGE-L F, labelled as the generation score.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facet::metrics::text {

// sacrebleu's 13a tokenization, as whitespace-separated tokens.
std::vector<std::string> tokenize_13a(std::string_view line);

struct BleuScore {
  double score = 0, bp = 0;
  std::array<double, 4> precisions{};
  int64_t sys_len = 0, ref_len = 0;
};
// Corpus BLEU of hypotheses against one reference each (sacrebleu's defaults).
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

// rouge-score's default tokenizer (no stemming).
std::vector<std::string> tokenize_rouge(std::string_view text);
struct RougeScore {
  double precision = 0, recall = 0, fmeasure = 0;
};
RougeScore rouge_l(std::string_view target, std::string_view prediction);

// --- LiteGPT -----------------------------------------------------------------------------------
// The 29 classes of compute_metrics.py: 22 local, COPD, Lung tumor, Pneumonia, Tuberculosis,
// "Other disease", "No finding", "Finding".
const std::vector<std::string>& litegpt_classes();
// extract_labels: 29 0/1 values.
std::vector<int> litegpt_extract_labels(std::string_view text);
// remove_bboxes: drops every "{<a><b><c><d>}".
std::string litegpt_remove_boxes(std::string_view text);
struct ParsedBox {
  std::string name;
  std::array<int64_t, 4> box;
};
// Every "<p>{name}</p> {<x1><y1><x2><y2>}" in `text`, left to right.
std::vector<ParsedBox> litegpt_parse_boxes(std::string_view text);
// (hits, reference boxes) of one sample.
std::pair<int64_t, int64_t> litegpt_box_hits(std::string_view prediction, std::string_view reference, double threshold = 0.5);

// Per-class precision, recall, F1 and support (sklearn's classification_report, zero_division 0),
// and the micro / macro / weighted / samples averages ("precision/micro", "f1/Cardiomegaly", ...).
std::map<std::string, double> classification_report(const std::vector<std::vector<int>>& truth,
                                                     const std::vector<std::vector<int>>& predicted,
                                                     const std::vector<std::string>& names);

// --- REGE --------------------------------------------------------------------------------------
// eval_FABA.py's AU index lists per dataset (FABA: 20 AUs) and the AUs whose F1 is averaged.
struct AuProtocol {
  std::vector<int> index;   // AUs parsed at all
  std::vector<int> select;  // AUs averaged
};
AuProtocol au_protocol(std::string_view dataset);  // FABA, BP4D, DISFA, EmotioNet, GFT
// AU2Labels: every "AU<n>" in text -> multi-hot over `index`.
std::vector<int> au_mentions(std::string_view text, const std::vector<int>& index);
// AUint2Labels: "1, 2, 4" split at ", " -> multi-hot over `index` (unknown entries ignored).
std::vector<int> au_label_string(std::string_view label, const std::vector<int>& index);
// F1 per selected AU x100 (nullopt where the reference skips the AU) and their mean over the rest.
std::pair<std::vector<std::optional<double>>, double> rege_au_f1(const std::vector<std::vector<int>>& truth,
                                                                  const std::vector<std::vector<int>>& predicted,
                                                                  const AuProtocol& protocol);
// The 7 emotions in the parser's order: happiness, sadness, surprise, anger, neutral, disgust, fear.
const std::vector<std::string>& rege_emotions();
// description2emotion: the emotion index of a free-text description.
int emotion_of_description(std::string_view description);
// An emotion label as the files give it: an integer, or a capitalised name ("Happiness"); -1 if neither.
int emotion_label(std::string_view label);

}  // namespace facet::metrics::text
