// Face-MLLM-style instruction data from the face datasets Facet reads ("face_qa"): a face dataset's
// labels (AUs of BP4D / DISFA / face_tasks, expression, attributes, age, head pose) become
// question-answer conversations, as Face-MLLM re-formulates traditional face datasets as QA
// (face.md §2.1; its templates are not public: every question and answer below is Facet's choice).
//
//   data:
//     name: face_qa
//     source: {name: face_tasks, root: /data/faces}   # any face dataset; read with the same split
//     mode: qa                 # qa: one question per (image, task) | caption: one description of all
//                              # known labels per image ("Describe this face.", the alignment stage)
//     tasks: [au, expression, attributes, age, pose]   # qa: the questions asked, in rotation
//     expression_names: [Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral]   # RAF-DB basic, 0-based
//     attribute_names: []      # names of the source's `attributes` columns (face_tasks sorts them by name)
//     tokenizer / template (vicuna_v1) / image_size (336) / train_image_mode / eval_image_mode as llava_instruct
//
// qa: sample k shows image k / T with task k % T; when that image lacks the task's label (a mask
// of 0, expression -1) the next task in rotation that it has is asked instead, and an image with
// none gets the caption. A task whose field the source never writes is an error naming it.
#include "core/error.h"
#include "core/text.h"
#include "data/instruct/vlm_data.h"

#include <cctype>
#include <cmath>

namespace facet::data {
namespace {

const std::vector<std::string> kTasks = {"au", "expression", "attributes", "age", "pose"};

std::string list_words(const std::vector<std::string>& items) {
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  std::string s;
  for (size_t i = 0; i + 1 < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + " and " + items.back();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class FaceQa : public Dataset, public vlm::ModalityLengths {
 public:
  FaceQa(const Config& c, const std::string& split)
      : source_(dataset_registry().create(c.at("source"), split)),
        mode_(c.get<std::string>("mode", "qa")),
        tasks_(c.get<std::vector<std::string>>("tasks", kTasks)),
        expressions_(c.get<std::vector<std::string>>("expression_names", {"Surprise", "Fear", "Disgust", "Happiness",
                                                                          "Sadness", "Anger", "Neutral"})),
        attributes_(c.get<std::vector<std::string>>("attribute_names", {})),
        text_(vlm::TextOptions::from(c, "vicuna_v1", "<image>", true)),
        image_(vlm::ImageOptions::from(c, split == "train" ? "train_image_mode" : "eval_image_mode", "pad", 336)) {
    if (mode_ != "qa" && mode_ != "caption")
      fail("{}: {}: expected qa or caption, got \"{}\"", c.where("mode"), c.full_key("mode"), mode_);
    if (tasks_.empty()) fail("{}: {}: no tasks", c.where("tasks"), c.full_key("tasks"));
    for (const auto& t : tasks_)
      if (std::find(kTasks.begin(), kTasks.end(), t) == kTasks.end())
        fail("{}: {}: unknown task \"{}\" (tasks: {})", c.where("tasks"), c.full_key("tasks"), t, join(kTasks));
    (void)c.get<std::string>(split == "train" ? "eval_image_mode" : "train_image_mode", "");
    au_names_ = source_->label_names();
  }

  int64_t size() const override {
    return source_->size() * (mode_ == "qa" ? static_cast<int64_t>(tasks_.size()) : 1);
  }
  PaddingSpec padding() const override { return vlm::padding(text_); }
  std::vector<int64_t> modality_lengths() const override {
    // Answers are short and similar; the question dominates (no image decoding for this).
    std::vector<int64_t> out(static_cast<size_t>(size()));
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = mode_ == "caption" ? 40 : 8 + 4 * static_cast<int64_t>(i % tasks_.size());
    return out;
  }

  Sample get(int64_t index, uint64_t augment_seed) const override {
    const int64_t T = mode_ == "qa" ? static_cast<int64_t>(tasks_.size()) : 1;
    Sample src = source_->get(index / T, augment_seed);
    std::string question, answer, asked;
    if (mode_ == "qa") {
      for (int64_t k = 0; k < T && answer.empty(); ++k) {
        asked = tasks_[static_cast<size_t>((index + k) % T)];
        answer = answer_for(src, asked, &question);
      }
    }
    if (answer.empty()) {
      question = "Describe this face.";
      answer = caption(src);
    }
    Sample s;
    s.id = src.id;
    s.fields["image"] = vlm::preprocess_image(src.fields.at("image"), image_);
    vlm::encode_conversation(s, {{Turn::Role::human, "<image>\n" + question}, {Turn::Role::gpt, answer}}, text_,
                             fmt::format("face_qa: sample {} ({})", index, src.id));
    // The AU label as FABA-Bench writes it ("1, 2, 4"), for the `rege` metric (AU names "AU<n>").
    if (!answer.empty() && asked == "au" && question != "Describe this face.") s.text["label"] = au_label(src);
    return s;
  }

 private:
  const torch::Tensor* field(const Sample& s, const std::string& name, const std::string& task) const {
    if (!s.fields.contains(name)) {
      if (std::find(tasks_.begin(), tasks_.end(), task) != tasks_.end() && mode_ == "qa")
        fail("face_qa: task {}: the source dataset gives no \"{}\" field (sample {})", task, name, s.id);
      return nullptr;
    }
    return &s.fields.at(name);
  }

  std::string au_label(const Sample& s) const {
    const auto& labels = s.fields.at("labels");
    const torch::Tensor* mask = s.fields.contains("label_mask") ? &s.fields.at("label_mask") : nullptr;
    std::string out;
    for (int64_t i = 0; i < labels.size(0) && static_cast<size_t>(i) < au_names_.size(); ++i) {
      const std::string& name = au_names_[size_t(i)];
      if (!name.starts_with("AU") || labels[i].item<float>() <= 0.5f || (mask && (*mask)[i].item<float>() <= 0)) continue;
      out += (out.empty() ? "" : ", ") + name.substr(2);
    }
    return out;
  }

  // The answer of `task` for this sample ("" when its label is unknown); sets the question.
  std::string answer_for(const Sample& s, const std::string& task, std::string* question) const {
    if (task == "au") {
      const auto* labels = field(s, "labels", task);
      const auto* mask = field(s, "label_mask", task);
      if (!labels || (mask && mask->sum().item<float>() == 0)) return "";
      std::vector<std::string> active;
      for (int64_t i = 0; i < labels->size(0); ++i) {
        const bool known = !mask || (*mask)[i].item<float>() > 0;
        if (known && (*labels)[i].item<float>() > 0.5f)
          active.push_back(static_cast<size_t>(i) < au_names_.size() ? au_names_[size_t(i)] : fmt::format("label {}", i));
      }
      *question = "Which facial action units are active in this face?";
      return active.empty() ? "No action unit is active." : list_words(active) + (active.size() == 1 ? " is active." : " are active.");
    }
    if (task == "expression") {
      const auto* e = field(s, "expression", task);
      if (!e) return "";
      const int64_t v = e->item<int64_t>();
      if (v < 0) return "";
      if (v >= static_cast<int64_t>(expressions_.size()))
        fail("face_qa: sample {}: expression {} has no name (expression_names has {})", s.id, v, expressions_.size());
      *question = "What is the facial expression of this person?";
      return "The expression is " + lower(expressions_[size_t(v)]) + ".";
    }
    if (task == "attributes") {
      const auto* a = field(s, "attributes", task);
      const auto* mask = field(s, "attribute_mask", task);
      if (!a || (mask && mask->sum().item<float>() == 0)) return "";
      if (static_cast<int64_t>(attributes_.size()) != a->size(0))
        fail("face_qa: the source gives {} attributes but attribute_names lists {}", a->size(0), attributes_.size());
      std::vector<std::string> asked, present;
      for (int64_t i = 0; i < a->size(0); ++i) {
        if (mask && (*mask)[i].item<float>() == 0) continue;
        asked.push_back(attributes_[size_t(i)]);
        if ((*a)[i].item<float>() > 0.5f) present.push_back(attributes_[size_t(i)]);
      }
      *question = "Which of these attributes does the face have: " + list_words(asked) + "?";
      return present.empty() ? "None of them." : list_words(present) + ".";
    }
    if (task == "age") {
      const auto* a = field(s, "age", task);
      const auto* mask = field(s, "age_mask", task);
      if (!a || (mask && mask->item<float>() == 0)) return "";
      *question = "How old does this person look?";
      return fmt::format("About {} years old.", static_cast<int64_t>(std::lround(a->item<float>())));
    }
    // pose
    const auto* p = field(s, "pose", task);
    const auto* mask = field(s, "pose_mask", task);
    if (!p || (mask && mask->sum().item<float>() < 3)) return "";
    *question = "What is the head pose of this person (yaw, pitch and roll in degrees)?";
    return fmt::format("Yaw {}, pitch {}, roll {} degrees.", std::lround((*p)[0].item<float>()),
                       std::lround((*p)[1].item<float>()), std::lround((*p)[2].item<float>()));
  }

  std::string caption(const Sample& s) const {
    std::string out;
    for (const auto& task : kTasks) {
      if (!s.fields.contains(task == "au" ? "labels" : task)) continue;
      if (task == "attributes" && attributes_.empty()) continue;  // nothing to call them
      std::string q;
      const std::string a = answer_for(s, task, &q);
      if (!a.empty()) out += (out.empty() ? "" : " ") + (task == "age" ? "The person is " + lower(a) : a);
    }
    return out.empty() ? "A face." : out;
  }

  std::shared_ptr<Dataset> source_;
  std::string mode_;
  std::vector<std::string> tasks_, expressions_, attributes_, au_names_;
  vlm::TextOptions text_;
  vlm::ImageOptions image_;
};

FACET_REGISTER(dataset_registry(), "face_qa",
               "Face-MLLM-style QA / caption conversations built from a face dataset's labels (AUs, expression, "
               "attributes, age, pose)",
               [](const Config& c, const std::string& split) { return std::make_shared<FaceQa>(c, split); });

}  // namespace
}  // namespace facet::data
