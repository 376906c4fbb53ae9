// The instruction datasets of the LLaVA family (fields and preprocessing in vlm_data.h):
//
//   data:
//     name: llava_instruct
//     annotations: llava.json          # LLaVA conversation JSON (instruct.h); or a map split -> file
//     image_root: ""                   # default: the JSON's folder
//     tokenizer: /models/llava/tokenizer.model
//     template: vicuna_v1              # llama2 | vicuna_v1 | minigpt_v2 (data/text/chat_template.h)
//     max_length: 2048                 # tokens beyond are cut, labels alike
//     image_size: 336
//     train_image_mode: pad            # pad | crop | resize (LLaVA-1.5 trains with pad)
//     eval_image_mode: pad
//     image_token_id: -200             # the id each image's single placeholder gets in input_ids
//     landmarks: false                 # EmoLA: read the record's "landmark" .npy (212 values)
//     landmark_root: ""                # default: image_root
//
//   data:
//     name: faba_instruct              # FABA-Instruct as published (face.md §1.6):
//     root: /data/FABAInstruct         #   <root>/{train,eval}/{train,eval}_{au,emotion}_anno.json,
//     task: au                         #   images/, landmarks/*.npy
//     tokenizer: ...                   # template vicuna_v1, landmarks read, 212 values required
//     train_image_mode: pad            # EmoLA trains on pad-to-square ...
//     eval_image_mode: crop            # ... and evaluates with the plain CLIP processor (eval_FABA.py)
//   Split "train" reads train/, every other split eval/. Eval records need no conversation: the
//   question is EmoLA's evaluation prompt and the reference its "gpt4" text; "label" (the AU list
//   "1, 2, 4" or the emotion) is kept in text["label"], "gpt4" in text["reference"].
//   Choice (not public): images and landmarks resolve against <root>/<train|eval>/ (image_root,
//   landmark_root override it).
#include "core/error.h"
#include "core/file_io.h"
#include "data/image/image_io.h"
#include "data/instruct/vlm_data.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

namespace facet::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Entry {
  std::string id;
  std::vector<Turn> turns;
  std::optional<fs::path> image, landmark;
  std::map<std::string, std::string> text;
};

// Shared by the conversation datasets: images, landmarks and the encoded conversation per sample.
class ConversationDataset : public Dataset, public vlm::ModalityLengths {
 public:
  ConversationDataset(const Config& c, const std::string& split, const std::string& default_style,
                      const std::string& default_eval_mode, bool landmarks_default)
      : text_(vlm::TextOptions::from(c, default_style, "<image>", true)),
        image_(vlm::ImageOptions::from(c, split == "train" ? "train_image_mode" : "eval_image_mode",
                                       split == "train" ? "pad" : default_eval_mode, 336)),
        landmarks_(c.get<bool>("landmarks", landmarks_default)),
        landmark_dim_(c.get_in_range<int64_t>("landmark_dim", 212, Range::at_least(1))) {
    // Both mode keys are read on every split, so a misspelt one is reported either way.
    (void)c.get<std::string>(split == "train" ? "eval_image_mode" : "train_image_mode", "");
  }

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  PaddingSpec padding() const override { return vlm::padding(text_); }

  std::vector<int64_t> modality_lengths() const override {
    std::vector<int64_t> out;
    out.reserve(entries_.size());
    for (const Entry& e : entries_) out.push_back(vlm::modality_length(e.turns, e.image.has_value()));
    return out;
  }

  Sample get(int64_t index, uint64_t) const override {
    const Entry& e = entries_.at(static_cast<size_t>(index));
    Sample s;
    s.id = e.id;
    if (e.image) {
      s.id = e.image->string();
      s.fields["image"] = vlm::preprocess_image(image::read_image(*e.image), image_);
    } else {
      s.fields["image"] = torch::zeros({3, image_.size, image_.size});  // LLaVA's text-only samples
    }
    if (landmarks_) {
      if (!e.landmark) fail("{}: sample {} has no landmark file", origin_, e.id);
      s.fields["landmarks"] = vlm::read_landmark_vector(*e.landmark, landmark_dim_);
    }
    vlm::encode_conversation(s, e.turns, text_, fmt::format("{}: sample {}", origin_, e.id));
    // Every sample carries every text key of the file ("" where its record has none): collate
    // lines the texts up by key.
    for (const auto& k : text_keys_) {
      const auto it = e.text.find(k);
      s.text[k] = it == e.text.end() ? std::string() : it->second;
    }
    return s;
  }

 protected:
  void collect_text_keys() {
    for (const Entry& e : entries_)
      for (const auto& [k, v] : e.text) text_keys_.insert(k);
  }

  std::set<std::string> text_keys_;
  vlm::TextOptions text_;
  vlm::ImageOptions image_;
  bool landmarks_;
  int64_t landmark_dim_;
  std::string origin_;
  std::vector<Entry> entries_;
};

class LlavaInstruct : public ConversationDataset {
 public:
  LlavaInstruct(const Config& c, const std::string& split) : ConversationDataset(c, split, "vicuna_v1", "pad", false) {
    std::string file;
    const Config ann = c.at("annotations");
    if (ann.is_map()) {
      if (!ann.has(split))
        fail("{}: {}: no file for split \"{}\" (have {})", c.where("annotations"), c.full_key("annotations"), split,
             join(ann.keys()));
      file = ann.get<std::string>(split);
    } else {
      file = c.get<std::string>("annotations");
    }
    const fs::path image_root = c.get<std::string>("image_root", "");
    const bool check = c.get<bool>("check_images", false);
    const fs::path landmark_root = c.get<std::string>("landmark_root", image_root.string());
    const std::string landmark_key = c.get<std::string>("landmark_key", "landmark");
    origin_ = file;
    for (Conversation& conv : read_instructions(file, image_root, check)) {
      if (conv.images.size() > 1)
        fail("{}: record {}: {} images; these models take one image per conversation", file, conv.id, conv.images.size());
      if (conv.turns.size() % 2 != 0)
        fail("{}: record {}: the conversation must end with a gpt answer", file, conv.id);
      Entry e{conv.id, std::move(conv.turns), std::nullopt, std::nullopt, {}};
      if (!conv.images.empty()) e.image = conv.images.front();
      const fs::path lroot = landmark_root.empty() ? fs::path(file).parent_path() : landmark_root;
      if (auto it = conv.extra.find(landmark_key); it != conv.extra.end()) e.landmark = lroot / it->second;
      if (landmarks_ && !e.landmark) fail("{}: record {}: no \"{}\" field (landmarks: true)", file, e.id, landmark_key);
      for (const char* k : {"label", "gpt4", "source"})
        if (auto it = conv.extra.find(k); it != conv.extra.end()) e.text[k == std::string("gpt4") ? "reference" : k] = it->second;
      entries_.push_back(std::move(e));
    }
    if (entries_.empty()) fail("{}: no conversations", file);
    collect_text_keys();
  }
};

// EmoLA's evaluation prompts (eval_FABA.py).
const std::map<std::string, std::string> kFabaPrompts = {{"au", "What AUs are conveyed by this face?"},
                                                          {"emotion", "What emotions are conveyed by this face?"}};

class FabaInstruct : public ConversationDataset {
 public:
  FabaInstruct(const Config& c, const std::string& split) : ConversationDataset(c, split, "vicuna_v1", "crop", true) {
    const fs::path root = c.get<std::string>("root");
    const std::string task = c.get<std::string>("task");
    if (!kFabaPrompts.count(task)) fail("{}: {}: expected au or emotion, got \"{}\"", c.where("task"), c.full_key("task"), task);
    const std::string dir = split == "train" ? "train" : "eval";
    const fs::path file = root / dir / (dir + "_" + task + "_anno.json");
    origin_ = file.string();
    const fs::path image_root = c.get<std::string>("image_root", (root / dir).string());
    const fs::path landmark_root = c.get<std::string>("landmark_root", image_root.string());
    if (!fs::exists(file)) fail("{}: {}: {} does not exist", c.where("root"), c.full_key("root"), file.string());
    json records;
    try {
      records = json::parse(read_file(file));
    } catch (const json::parse_error& e) {
      fail("{}: not valid JSON (byte {}): {}", file.string(), e.byte, e.what());
    }
    if (!records.is_array()) fail("{}: expected a JSON list of records", file.string());
    for (size_t i = 0; i < records.size(); ++i) {
      const json& r = records[i];
      const std::string where = fmt::format("{}: record {}", file.string(), i);
      if (!r.is_object()) fail("{}: expected an object", where);
      auto str = [&](const char* key, bool required) -> std::optional<std::string> {
        const auto it = r.find(key);
        if (it == r.end() || it->is_null()) {
          if (required) fail("{}: \"{}\": missing", where, key);
          return std::nullopt;
        }
        if (it->is_string()) return it->get<std::string>();
        if (it->is_number()) return it->dump();
        fail("{}: \"{}\": expected a string", where, key);
      };
      Entry e;
      e.id = str("id", false).value_or(std::to_string(i));
      e.image = image_root / *str("image", true);
      e.landmark = landmark_root / *str("landmark", true);
      if (auto label = str("label", false)) e.text["label"] = *label;
      if (auto ref = str("gpt4", false)) e.text["reference"] = *ref;
      if (const auto turns = r.find("conversations"); turns != r.end() && turns->is_array() && !turns->empty()) {
        for (size_t t = 0; t < turns->size(); ++t) {
          const json& turn = (*turns)[t];
          if (!turn.is_object() || !turn.contains("from") || !turn.contains("value") || !turn["value"].is_string())
            fail("{}: conversations[{}]: expected {{\"from\", \"value\"}}", where, t);
          const std::string from = turn["from"].is_string() ? turn["from"].get<std::string>() : "";
          const Turn::Role role = from == "gpt" || from == "assistant" ? Turn::Role::gpt : Turn::Role::human;
          if ((role == Turn::Role::human) != (t % 2 == 0))
            fail("{}: conversations[{}]: turns must alternate starting with human", where, t);
          e.turns.push_back({role, turn["value"].get<std::string>()});
        }
        if (e.turns.size() % 2 != 0) fail("{}: the conversation must end with a gpt answer", where);
        bool marker = false;
        for (const Turn& t : e.turns) marker = marker || t.text.find("<image>") != std::string::npos;
        if (!marker) e.turns.front().text = "<image>\n" + e.turns.front().text;
      } else {
        const auto answer = e.text.count("reference") ? e.text["reference"] : e.text.count("label") ? e.text["label"] : "";
        if (answer.empty()) fail("{}: no \"conversations\", \"gpt4\" or \"label\" to answer with", where);
        e.turns = {{Turn::Role::human, "<image>\n" + kFabaPrompts.at(task)}, {Turn::Role::gpt, answer}};
      }
      entries_.push_back(std::move(e));
    }
    if (entries_.empty()) fail("{}: no records", file.string());
    collect_text_keys();
  }
};

FACET_REGISTER(dataset_registry(), "llava_instruct",
               "LLaVA-format instruction JSON with images: chat template, answer-only labels, padded batches, "
               "optional EmoLA landmark vectors",
               [](const Config& c, const std::string& split) { return std::make_shared<LlavaInstruct>(c, split); });
FACET_REGISTER(dataset_registry(), "faba_instruct",
               "FABA-Instruct (EmoLA) as published: AU or emotion JSON, images, 212-d landmark .npy; pad-to-square "
               "training, crop evaluation",
               [](const Config& c, const std::string& split) { return std::make_shared<FabaInstruct>(c, split); });

}  // namespace
}  // namespace facet::data
