#include "metrics/text_metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>

namespace facet::metrics::text {

namespace {

bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(static_cast<unsigned char>(s[i]))) ++i;
    const size_t start = i;
    while (i < s.size() && !is_space(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

// 13a's first rule: punctuation other than period, comma, apostrophe and dash, as sacrebleu's
// class [{-~ [-` space-& (-+ :-@ /].
bool is_13a_punct(unsigned char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<std::string> tokenize_13a(std::string_view input) {
  std::string line(input);
  while (!line.empty() && is_space(static_cast<unsigned char>(line.back()))) line.pop_back();  // rstrip
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // Each rule is one left-to-right, non-overlapping regex substitution, as Python's re.sub.
  std::string a;
  for (char c : line) {
    if (is_13a_punct(static_cast<unsigned char>(c))) a += ' ', a += c, a += ' ';
    else a += c;
  }
  auto pairwise = [](const std::string& s, auto matches, auto emit) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      if (i + 1 < s.size() && matches(static_cast<unsigned char>(s[i]), static_cast<unsigned char>(s[i + 1]))) {
        emit(out, s[i], s[i + 1]);
        i += 2;
      } else {
        out += s[i++];
      }
    }
    return out;
  };
  auto dot = [](unsigned char c) { return c == '.' || c == ','; };
  // ([^0-9])([\.,]) -> "\1 \2 "
  std::string b = pairwise(a, [&](unsigned char x, unsigned char y) { return !is_digit(x) && dot(y); },
                           [](std::string& o, char x, char y) { o += x, o += ' ', o += y, o += ' '; });
  // ([\.,])([^0-9]) -> " \1 \2"
  std::string c = pairwise(b, [&](unsigned char x, unsigned char y) { return dot(x) && !is_digit(y); },
                           [](std::string& o, char x, char y) { o += ' ', o += x, o += ' ', o += y; });
  // ([0-9])(-) -> "\1 \2 "
  std::string d = pairwise(c, [](unsigned char x, unsigned char y) { return is_digit(x) && y == '-'; },
                           [](std::string& o, char x, char y) { o += x, o += ' ', o += y, o += ' '; });
  return split_ws(d);
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size()) throw std::invalid_argument("corpus_bleu: one reference per hypothesis");
  std::array<int64_t, 4> correct{}, total{};
  BleuScore s;
  for (size_t k = 0; k < hypotheses.size(); ++k) {
    const auto hyp = tokenize_13a(hypotheses[k]), ref = tokenize_13a(references[k]);
    s.sys_len += static_cast<int64_t>(hyp.size());
    s.ref_len += static_cast<int64_t>(ref.size());
    for (size_t n = 1; n <= 4; ++n) {
      std::map<std::vector<std::string>, int64_t> h, r;
      for (size_t i = 0; i + n <= hyp.size(); ++i) ++h[std::vector<std::string>(hyp.begin() + long(i), hyp.begin() + long(i + n))];
      for (size_t i = 0; i + n <= ref.size(); ++i) ++r[std::vector<std::string>(ref.begin() + long(i), ref.begin() + long(i + n))];
      for (const auto& [gram, count] : h) {
        total[n - 1] += count;
        if (auto it = r.find(gram); it != r.end()) correct[n - 1] += std::min(count, it->second);
      }
    }
  }
  s.bp = 1.0;
  if (s.sys_len < s.ref_len) s.bp = s.sys_len > 0 ? std::exp(1 - double(s.ref_len) / double(s.sys_len)) : 0.0;
  if (std::all_of(correct.begin(), correct.end(), [](int64_t v) { return v == 0; })) return s;
  double smooth = 1;
  for (size_t n = 0; n < 4; ++n) {
    if (total[n] == 0) break;
    if (correct[n] == 0) {
      smooth *= 2;
      s.precisions[n] = 100.0 / (smooth * double(total[n]));
    } else {
      s.precisions[n] = 100.0 * double(correct[n]) / double(total[n]);
    }
  }
  double logs = 0;
  for (double p : s.precisions) logs += p == 0 ? -9999999999.0 : std::log(p);
  s.score = s.bp * std::exp(logs / 4);
  return s;
}

std::vector<std::string> tokenize_rouge(std::string_view text) {
  std::string t = lower_ascii(text);
  for (char& c : t)
    if (!((c >= 'a' && c <= 'z') || is_digit(static_cast<unsigned char>(c)))) c = ' ';
  return split_ws(t);
}

RougeScore rouge_l(std::string_view target, std::string_view prediction) {
  const auto t = tokenize_rouge(target), p = tokenize_rouge(prediction);
  if (t.empty() || p.empty()) return {};
  std::vector<int64_t> prev(p.size() + 1, 0), cur(p.size() + 1, 0);
  for (size_t i = 1; i <= t.size(); ++i) {
    for (size_t j = 1; j <= p.size(); ++j)
      cur[j] = t[i - 1] == p[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const auto lcs = static_cast<double>(prev[p.size()]);
  RougeScore s;
  s.precision = lcs / double(p.size());
  s.recall = lcs / double(t.size());
  s.fmeasure = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
  return s;
}

// --- LiteGPT -----------------------------------------------------------------------------------

const std::vector<std::string>& litegpt_classes() {
  static const std::vector<std::string> names = {
      "Aortic enlargement", "Atelectasis",      "Calcification",      "Cardiomegaly", "Clavicle fracture",
      "Consolidation",      "Edema",            "Emphysema",          "Enlarged PA",  "ILD",
      "Infiltration",       "Lung Opacity",     "Lung cavity",        "Lung cyst",    "Mediastinal shift",
      "Nodule/Mass",        "Pleural effusion", "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
      "Rib fracture",       "Other lesion",     "COPD",               "Lung tumor",   "Pneumonia",
      "Tuberculosis",       "Other disease",    "No finding",         "Finding"};
  return names;
}

std::vector<int> litegpt_extract_labels(std::string_view text) {
  // re.sub(r"<.*?>", "", text.lower()): each "<" up to the next ">" on the same line goes.
  const std::string lower = lower_ascii(text);
  std::string t;
  for (size_t i = 0; i < lower.size();) {
    if (lower[i] == '<') {
      const size_t close = lower.find('>', i + 1);
      const size_t newline = lower.find('\n', i + 1);
      if (close != std::string::npos && (newline == std::string::npos || close < newline)) {
        i = close + 1;
        continue;
      }
    }
    t += lower[i++];
  }
  const auto& names = litegpt_classes();
  std::vector<int> labels(names.size(), 0);
  for (size_t i = 0; i + 1 < names.size(); ++i) labels[i] = t.find(lower_ascii(names[i])) != std::string::npos;
  if (!labels[names.size() - 2]) labels.back() = 1;
  return labels;
}

namespace {

// Matches "{<d+><d+><d+><d+>}" at `at`; the end position or npos.
size_t match_box(std::string_view s, size_t at, std::array<int64_t, 4>* out) {
  if (at >= s.size() || s[at] != '{') return std::string_view::npos;
  size_t i = at + 1;
  for (int k = 0; k < 4; ++k) {
    if (i >= s.size() || s[i] != '<') return std::string_view::npos;
    ++i;
    const size_t start = i;
    int64_t v = 0;
    while (i < s.size() && is_digit(static_cast<unsigned char>(s[i]))) v = v * 10 + (s[i++] - '0');
    if (i == start || i >= s.size() || s[i] != '>' || i - start > 15) return std::string_view::npos;
    ++i;
    if (out) (*out)[static_cast<size_t>(k)] = v;
  }
  if (i >= s.size() || s[i] != '}') return std::string_view::npos;
  return i + 1;
}

}  // namespace

std::string litegpt_remove_boxes(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t end = match_box(text, i, nullptr);
    if (end != std::string_view::npos) {
      i = end;
      continue;
    }
    out += text[i++];
  }
  return out;
}

std::vector<ParsedBox> litegpt_parse_boxes(std::string_view s) {
  // r'<p>([^<]+)</p> \{<(\d+)><(\d+)><(\d+)><(\d+)>\}', scanned as re.findall does.
  std::vector<ParsedBox> out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, 3) == "<p>") {
      const size_t name_end = s.find('<', i + 3);
      if (name_end != std::string_view::npos && name_end > i + 3 && s.substr(name_end, 5) == "</p> ") {
        ParsedBox b;
        const size_t end = match_box(s, name_end + 5, &b.box);
        if (end != std::string_view::npos) {
          b.name = std::string(s.substr(i + 3, name_end - i - 3));
          out.push_back(std::move(b));
          i = end;
          continue;
        }
      }
    }
    ++i;
  }
  return out;
}

std::pair<int64_t, int64_t> litegpt_box_hits(std::string_view prediction, std::string_view reference, double threshold) {
  const auto pred = litegpt_parse_boxes(prediction), truth = litegpt_parse_boxes(reference);
  auto iou = [](const std::array<int64_t, 4>& a, const std::array<int64_t, 4>& b) {
    const double w = std::max<double>(0, double(std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1));
    const double h = std::max<double>(0, double(std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1));
    const double inter = w * h;
    const double uni = double(a[2] - a[0] + 1) * double(a[3] - a[1] + 1) + double(b[2] - b[0] + 1) * double(b[3] - b[1] + 1) - inter;
    return uni != 0 ? inter / uni : 0.0;
  };
  int64_t hits = 0;
  for (const auto& g : truth)
    for (const auto& p : pred)
      if (p.name == g.name && iou(p.box, g.box) > threshold) {
        ++hits;
        break;
      }
  return {hits, static_cast<int64_t>(truth.size())};
}

std::map<std::string, double> classification_report(const std::vector<std::vector<int>>& truth,
                                                     const std::vector<std::vector<int>>& predicted,
                                                     const std::vector<std::string>& names) {
  const size_t C = names.size();
  std::vector<double> tp(C), fp(C), fn(C), support(C);
  for (size_t s = 0; s < truth.size(); ++s)
    for (size_t c = 0; c < C; ++c) {
      const bool t = truth[s][c] != 0, p = predicted[s][c] != 0;
      tp[c] += t && p, fp[c] += !t && p, fn[c] += t && !p, support[c] += t;
    }
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  auto f1 = [](double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; };
  std::map<std::string, double> out;
  double macro_p = 0, macro_r = 0, macro_f = 0, w_p = 0, w_r = 0, w_f = 0, total_support = 0;
  for (size_t c = 0; c < C; ++c) {
    const double p = ratio(tp[c], tp[c] + fp[c]), r = ratio(tp[c], tp[c] + fn[c]), f = f1(p, r);
    out["precision/" + names[c]] = p, out["recall/" + names[c]] = r, out["f1/" + names[c]] = f;
    out["support/" + names[c]] = support[c];
    macro_p += p, macro_r += r, macro_f += f;
    w_p += p * support[c], w_r += r * support[c], w_f += f * support[c], total_support += support[c];
  }
  const double TP = std::accumulate(tp.begin(), tp.end(), 0.0), FP = std::accumulate(fp.begin(), fp.end(), 0.0),
               FN = std::accumulate(fn.begin(), fn.end(), 0.0);
  const double mp = ratio(TP, TP + FP), mr = ratio(TP, TP + FN);
  out["precision/micro"] = mp, out["recall/micro"] = mr, out["f1/micro"] = f1(mp, mr);
  const double n = static_cast<double>(std::max<size_t>(C, 1));
  out["precision/macro"] = macro_p / n, out["recall/macro"] = macro_r / n, out["f1/macro"] = macro_f / n;
  out["precision/weighted"] = ratio(w_p, total_support), out["recall/weighted"] = ratio(w_r, total_support);
  out["f1/weighted"] = ratio(w_f, total_support);
  double sp = 0, sr = 0, sf = 0;
  for (size_t s = 0; s < truth.size(); ++s) {
    double t = 0, p = 0, both = 0;
    for (size_t c = 0; c < C; ++c) t += truth[s][c] != 0, p += predicted[s][c] != 0, both += truth[s][c] != 0 && predicted[s][c] != 0;
    const double ps = ratio(both, p), rs = ratio(both, t);
    sp += ps, sr += rs, sf += (t + p > 0 ? 2 * both / (t + p) : 0.0);
  }
  const double m = static_cast<double>(std::max<size_t>(truth.size(), 1));
  out["precision/samples"] = sp / m, out["recall/samples"] = sr / m, out["f1/samples"] = sf / m;
  return out;
}

// --- REGE --------------------------------------------------------------------------------------

AuProtocol au_protocol(std::string_view dataset) {
  if (dataset == "FABA")
    return {{1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26, 27, 43}, {1, 2, 4, 5, 6, 10, 12, 17, 24, 25, 26, 43}};
  if (dataset == "BP4D") return {{1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24}, {1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24}};
  if (dataset == "DISFA") return {{1, 2, 4, 6, 9, 12, 25, 26}, {1, 2, 4, 6, 9, 12, 25, 26}};
  if (dataset == "EmotioNet") return {{1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43}, {1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43}};
  if (dataset == "GFT")
    return {{1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26}, {1, 2, 4, 6, 10, 12, 14, 15, 23, 24}};
  throw std::invalid_argument("au_protocol: expected FABA, BP4D, DISFA, EmotioNet or GFT, got \"" + std::string(dataset) + "\"");
}

std::vector<int> au_mentions(std::string_view text, const std::vector<int>& index) {
  std::vector<int> out(index.size(), 0);
  for (size_t at = text.find("AU"); at != std::string_view::npos; at = text.find("AU", at + 1)) {
    size_t i = at + 2;
    std::string digits;
    while (i < text.size() && is_digit(static_cast<unsigned char>(text[i]))) digits += text[i++];
    if (digits.empty() || digits.size() > 6) continue;
    // The reference looks the digits up as a string: "AU01" matches no AU.
    for (size_t k = 0; k < index.size(); ++k)
      if (digits == std::to_string(index[k])) out[k] = 1;
  }
  return out;
}

std::vector<int> au_label_string(std::string_view label, const std::vector<int>& index) {
  std::vector<int> out(index.size(), 0);
  size_t start = 0;
  while (true) {
    const size_t at = label.find(", ", start);
    const std::string_view item = label.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start);
    for (size_t k = 0; k < index.size(); ++k)
      if (item == std::to_string(index[k])) out[k] = 1;
    if (at == std::string_view::npos) break;
    start = at + 2;
  }
  return out;
}

std::pair<std::vector<std::optional<double>>, double> rege_au_f1(const std::vector<std::vector<int>>& truth,
                                                                  const std::vector<std::vector<int>>& predicted,
                                                                  const AuProtocol& protocol) {
  std::vector<std::optional<double>> per_au;
  double sum = 0;
  int counted = 0;
  for (int au : protocol.select) {
    const auto k = static_cast<size_t>(std::find(protocol.index.begin(), protocol.index.end(), au) - protocol.index.begin());
    double tp = 0, fp = 0, fn = 0;
    std::set<int> values;
    for (size_t s = 0; s < truth.size(); ++s) {
      const int t = truth[s][k], p = predicted[s][k];
      values.insert(t), values.insert(p);
      tp += t && p, fp += !t && p, fn += t && !p;
    }
    if (values.size() < 2) {  // sklearn's confusion matrix is 1 x 1: the reference skips the AU
      per_au.push_back(std::nullopt);
      continue;
    }
    double f1 = 0;
    if (tp > 0) {
      const double p = tp / (tp + fp), r = tp / (tp + fn);
      f1 = 2 * p * r / (p + r);
    }
    per_au.push_back(100 * f1);
    sum += 100 * f1;
    ++counted;
  }
  return {per_au, counted ? sum / counted : std::nan("")};
}

const std::vector<std::string>& rege_emotions() {
  static const std::vector<std::string> e = {"happiness", "sadness", "surprise", "anger", "neutral", "disgust", "fear"};
  return e;
}

namespace {

// EmoLA's synonym lists (eval_FABA.py), per emotion in rege_emotions() order.
const std::vector<std::set<std::string>>& synonyms() {
  static const std::vector<std::set<std::string>> s = {
      {"happiness", "happy", "smiling", "smile", "pleasant", "content", "contentment", "relaxed", "relaxation", "cheerful",
       "joy", "amusement", "amused", "positivity", "positive", "lightheartedness", "joyful", "friendly", "warmth", "bright"},
      {"sadness", "crying", "distress", "concern", "discomfort", "anguish", "somber"},
      {"surprise", "surprised", "startled", "puzzled", "astonishment", "disbelief", "wonder", "curiosity", "curious",
       "confusion", "bewilderment", "skepticism", "excitement", "uncertainty"},
      {"anger", "mad", "irate", "outraged", "agitation", "irritated", "enraged", "annoyed", "incensed", "serious",
       "frustration", "displeased", "stern"},
      {"neutral", "neutrality", "calm", "contemplative", "concerned", "thoughtful", "focused", "solemn", "mild"},
      {"disgust", "distaste", "disgusted", "discomfort", "displeasure", "displeased", "disapproval", "disdain", "contempt"},
      {"fear", "shock", "anxiety", "apprehension", "tension", "panic", "alertness", "focus", "worry", "alarm", "curiosity",
       "contemplation"}};
  return s;
}

bool is_word(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  const std::string t = lower_ascii(text);
  for (size_t i = 0; i < t.size();) {
    if (!is_word(static_cast<unsigned char>(t[i]))) {
      ++i;
      continue;
    }
    const size_t start = i;
    while (i < t.size() && is_word(static_cast<unsigned char>(t[i]))) ++i;
    out.push_back(t.substr(start, i - start));
  }
  return out;
}

// remove_neg_sentences: split at a whitespace character preceded by "." or "?" unless preceded by
// "\w.\w." or "[A-Z][a-z]." (abbreviations), drop sentences with a negative word as a substring.
std::string remove_negative_sentences(std::string_view text) {
  static const std::vector<std::string> negative = {"not", "no", "isn't ", "nothing", "cannot", "won't", "shouldn't", "neither", "nor"};
  std::vector<std::string> sentences;
  size_t start = 0;
  auto w = [&](size_t i) { return std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || static_cast<unsigned char>(text[i]) >= 0x80; };
  for (size_t i = 1; i < text.size(); ++i) {
    if (!is_space(static_cast<unsigned char>(text[i]))) continue;
    if (text[i - 1] != '.' && text[i - 1] != '?') continue;
    if (i >= 4 && w(i - 4) && text[i - 3] == '.' && w(i - 2) && text[i - 1] != '\n') continue;  // (?<!\w\.\w.)
    if (i >= 3 && std::isupper(static_cast<unsigned char>(text[i - 3])) && std::islower(static_cast<unsigned char>(text[i - 2])) &&
        text[i - 1] == '.')
      continue;  // (?<![A-Z][a-z]\.)
    sentences.emplace_back(text.substr(start, i - start));
    start = i + 1;
  }
  sentences.emplace_back(text.substr(start));
  std::string out;
  bool first = true;
  for (const auto& s : sentences) {
    const std::string lower = lower_ascii(s);
    if (std::any_of(negative.begin(), negative.end(), [&](const std::string& n) { return lower.find(n) != std::string::npos; }))
      continue;
    if (!first) out += ' ';
    out += s;
    first = false;
  }
  return out;
}

}  // namespace

int emotion_of_description(std::string_view description) {
  std::string text = remove_negative_sentences(description);
  if (text.empty()) text = std::string(description);
  // re.match(r'^(.*?)[.!?]'): the text before the first . ! or ? on the first line. Choice: where
  // there is none (the reference raises), the whole text is the first sentence.
  std::string first, rest;
  const size_t end = text.find_first_of(".!?\n");
  if (end != std::string::npos && text[end] != '\n') {
    first = text.substr(0, end);
    rest = text.substr(end + 1);
  } else {
    first = text;
  }
  const auto& syn = synonyms();
  for (const auto& word : words(first))
    for (size_t e = 0; e < syn.size(); ++e)
      if (syn[e].count(word)) return static_cast<int>(e);
  std::vector<int> counts(syn.size(), 0);
  for (const auto& word : words(rest))
    for (size_t e = 0; e < syn.size(); ++e) counts[e] += static_cast<int>(syn[e].count(word));
  return static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());  // first maximum
}

int emotion_label(std::string_view label) {
  static const std::map<std::string, int> names = {{"Happiness", 0}, {"Sadness", 1}, {"Surprise", 2}, {"Anger", 3},
                                                   {"Neutral", 4},   {"Disgust", 5}, {"Fear", 6}};
  std::string s(label);
  while (!s.empty() && is_space(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && is_space(static_cast<unsigned char>(s[b]))) ++b;
  s = s.substr(b);
  if (!s.empty() && std::all_of(s.begin() + (s[0] == '-' || s[0] == '+'), s.end(), [](char c) { return is_digit(static_cast<unsigned char>(c)); }) &&
      s.size() > size_t(s[0] == '-' || s[0] == '+') && s.size() < 10)
    return std::stoi(s);
  const auto it = names.find(std::string(label));
  return it == names.end() ? -1 : it->second;
}

}  // namespace facet::metrics::text
