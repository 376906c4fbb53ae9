// `facet data synth faba`: a small FABA-Instruct (EmoLA, face.md §1.6) in the published layout,
//   <root>/{train,eval}/{train,eval}_{au,emotion}_anno.json, <root>/{train,eval}/images/*.jpg,
//   <root>/{train,eval}/landmarks/*.npy
// read by `faba_instruct`, whose answers a model can learn from the pixels and the landmark prior:
// faces drawn by data/face/synth_face.h showing one of seven prototype emotions through its AUs
// (FABA's evaluated AUs that the drawing can show: 1, 2, 4, 5, 6, 10, 12, 17, 24, 25, 26; AU43 is
// never drawn). Training records hold a conversation (the question with "<image>" after it, as the
// release writes it; the answer lists the active AUs, "The face shows AU1, AU2 and AU26."; FABA's
// are GPT-4 paragraphs, too long for a test model to learn in seconds); evaluation records
// hold `label` ("1, 2, 26" / "Happiness") and `gpt4` (the reference answer), no conversation.
// The landmark prior: 212 float32 values, 106 points (x, y) in -1..1 of the image as InsightFace's
// 2d106det outputs them. Choice (synthetic): the 106 points are the drawing's 68 iBUG landmarks
// followed by 38 midpoints of neighbouring ones (jaw 16, brows 8, nose bridge 3, outer lips 11),
// not 2d106det's topology — what matters here is that they move with the AUs as the pixels do.
#include "core/config.h"
#include "core/file_io.h"
#include "data/face/synth_face.h"
#include "data/npy.h"
#include "data/sampler.h"
#include "data/synth.h"

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>

namespace facet::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using face::Expression;

struct FabaSynthOptions {
  int64_t train = 200, eval = 40, size = 64;
  uint64_t seed = 0;

  static FabaSynthOptions from(const Config& c) {
    FabaSynthOptions o;
    o.train = c.get<int64_t>("train", o.train);
    o.eval = c.get<int64_t>("eval", o.eval);
    o.size = c.get<int64_t>("size", o.size);
    o.seed = c.get<uint64_t>("seed", o.seed);
    if (o.train < 1 || o.eval < 1) fail("{}: {} and {}: expected at least 1 image each", c.where(), c.full_key("train"), c.full_key("eval"));
    if (o.size < 32 || o.size > 1024) fail("{}: {}: expected 32..1024, got {}", c.where("size"), c.full_key("size"), o.size);
    return o;
  }
};

// FABA's seven emotions (eval_FABA.py's classes), each drawn through its prototype's AUs.
struct Emotion {
  Expression drawn;
  const char* label;  // as FABA's emotion labels spell them
  const char* word;   // in the answer
};
constexpr std::array<Emotion, 7> kEmotions = {{{Expression::kNeutral, "Neutral", "a neutral expression"},
                                               {Expression::kHappy, "Happiness", "happiness"},
                                               {Expression::kSad, "Sadness", "sadness"},
                                               {Expression::kSurprise, "Surprise", "surprise"},
                                               {Expression::kFear, "Fear", "fear"},
                                               {Expression::kAnger, "Anger", "anger"},
                                               {Expression::kDisgust, "Disgust", "disgust"}}};

// FABA's evaluated AUs that synth_face draws (AU43, eyes closed, it cannot).
constexpr std::array<int, 11> kFabaDrawnAus = {1, 2, 4, 5, 6, 10, 12, 17, 24, 25, 26};

// Short on purpose (a test model learns it in seconds): "The face shows AU1, AU2 and AU26."
std::string au_answer(const std::vector<int>& active) {
  if (active.empty()) return "The face shows no active AU.";
  std::string list = fmt::format("AU{}", active.front());
  for (size_t i = 1; i < active.size(); ++i) list += fmt::format("{}AU{}", i + 1 == active.size() ? " and " : ", ", active[i]);
  return "The face shows " + list + ".";
}

// The 212-d prior: 68 landmarks, then 38 midpoints, as (x, y) in -1..1.
std::vector<float> landmark_vector(const std::vector<cv::Point2f>& lm, int size) {
  std::vector<cv::Point2f> pts = lm;
  auto mid = [&](size_t a, size_t b) { pts.push_back((lm[a] + lm[b]) * 0.5f); };
  for (size_t i = 0; i < 16; ++i) mid(i, i + 1);  // jaw
  for (size_t i = 17; i < 21; ++i) mid(i, i + 1);  // right brow
  for (size_t i = 22; i < 26; ++i) mid(i, i + 1);  // left brow
  for (size_t i = 27; i < 30; ++i) mid(i, i + 1);  // nose bridge
  for (size_t i = 48; i < 59; ++i) mid(i, i + 1);  // outer lips
  std::vector<float> v;
  for (const auto& p : pts) {
    v.push_back(p.x / static_cast<float>(size) * 2 - 1);
    v.push_back(p.y / static_cast<float>(size) * 2 - 1);
  }
  return v;
}

SynthResult write_faba(const FabaSynthOptions& o, const fs::path& root) {
  const std::vector<int> coded(kFabaDrawnAus.begin(), kFabaDrawnAus.end());
  const int n = static_cast<int>(o.size);
  int64_t files = 0, au_positives = 0;
  for (const std::string split : {"train", "eval"}) {
    const bool train = split == "train";
    const fs::path dir = root / split;
    fs::create_directories(dir / "images");
    fs::create_directories(dir / "landmarks");
    json au_records = json::array(), emotion_records = json::array();
    const int64_t count = train ? o.train : o.eval;
    for (int64_t i = 0; i < count; ++i) {
      face::SynthRng rng(mix_seed(o.seed, train ? 0xFABA : 0xFABB, static_cast<uint64_t>(i)));
      const face::FaceIdentity id = face::random_identity(rng, n);
      const Emotion& emotion = kEmotions[static_cast<size_t>(rng.integer(0, 6))];
      const auto intensities = face::sample_intensities(rng, emotion.drawn, coded, 1.0, false);
      cv::Mat image(n, n, CV_8UC3);
      const auto lm = face::draw_face(image, id, intensities, rng);
      std::vector<int> active;
      for (const auto& [au, level] : intensities)
        if (level >= 2) active.push_back(au);
      au_positives += static_cast<int64_t>(active.size());

      const std::string stem = fmt::format("{}_{:05d}", split, i);
      const std::string image_rel = "images/" + stem + ".jpg", landmark_rel = "landmarks/" + stem + ".npy";
      if (!cv::imwrite((dir / image_rel).string(), image, {cv::IMWRITE_JPEG_QUALITY, 95}))
        fail("{}: cannot write the JPEG", (dir / image_rel).string());
      write_npy(dir / landmark_rel, landmark_vector(lm, n), {212});
      files += 2;

      std::string au_label;
      for (int au : active) au_label += (au_label.empty() ? "" : ", ") + std::to_string(au);
      const std::string emotion_answer = fmt::format("This face conveys {}.", emotion.word);
      for (const auto& [records, question, answer, label] :
           {std::tuple{&au_records, "What AUs are conveyed by this face?", au_answer(active), au_label},
            std::tuple{&emotion_records, "What emotions are conveyed by this face?", emotion_answer, std::string(emotion.label)}}) {
        json r = {{"id", stem}, {"image", image_rel}, {"landmark", landmark_rel}, {"source", "Synthetic"}};
        if (train) {
          const json human = {{"from", "human"}, {"value", std::string(question) + "\n<image>"}};
          const json gpt = {{"from", "gpt"}, {"value", answer}};
          r["conversations"] = json::array({human, gpt});
        } else {
          r["label"] = label;
          r["gpt4"] = answer;
        }
        records->push_back(std::move(r));
      }
    }
    write_file_atomic(dir / (split + "_au_anno.json"), au_records.dump(1));
    write_file_atomic(dir / (split + "_emotion_anno.json"), emotion_records.dump(1));
    files += 2;
  }
  SynthResult r;
  r.root = root;
  r.files = files;
  r.summary = fmt::format("faba: {} train + {} eval faces ({}x{} px), AU and emotion annotations, 212-d landmark .npy; "
                          "{:.2f} active AUs per face",
                          o.train, o.eval, n, n, static_cast<double>(au_positives) / static_cast<double>(o.train + o.eval));
  return r;
}

FACET_REGISTER(synth_registry(), "faba",
               "FABA-Instruct layout (EmoLA): drawn faces, AU and emotion annotation JSON, 212-d landmark .npy "
               "(options: train, eval, size, seed)",
               synth_writer<FabaSynthOptions>(write_faba));

}  // namespace
}  // namespace facet::data
