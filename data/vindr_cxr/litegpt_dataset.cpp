// LiteGPT's instruction data on VinDr-CXR ("vindr_cxr_litegpt"): one sample per image, the answer
// built natively from the published CSVs (litegpt_answers.h, medical.md §1.5), the MiniGPT-v2
// template "<s>[INST] <Img><ImageHere></Img> {task prompt} [/INST] {answer}</s>" with the image as one
// placeholder token. Fields as in data/instruct/vlm_data.h, plus finding_labels float [28] (the union of
// the image's rows in image_labels_*.csv, for the litegpt_classes metric's truth_field).
//
//   data:
//     name: vindr_cxr_litegpt
//     root: /data/vindr-cxr/1.0.0     # annotations/{annotations,image_labels}_{train,test}.csv
//     image_format: jpg               # jpg | png | dicom, at <image_dir>/<train|test>/<image_id>.<ext>
//     image_dir: ""                   # default: root
//     answer: grounded                # grounded (stage 1: global + local with boxes) | global (stage 2) | local
//     prompt: grounding               # grounding (the [grounding] pool) | vqa (the evaluation's [vqa]
//                                     # question) | none (the bare "<Img><ImageHere></Img>", as the
//                                     # release's global-label dataset does)
//     prompt_pool: all                # all: one of the five grounding prompts per sample and epoch in
//                                     # training (the first in evaluation) | first: always the first
//     dedup: true                     # the reference's IoU > 0.5 chaining of same-class boxes
//     tokenizer: /models/llama-2-7b-chat/tokenizer.model
//     template: minigpt_v2            # end_sym "</s>" (LiteGPT's targets end with EOS)
//     image_size: 224                 # image_mode: resize (LiteGPT's Resize((224, 224)))
//     val_fraction: 0.0               # "val": this share of the train images (by a hash of the id)
// Coordinates are scaled by the size of the image file read (LiteGPT reads its JPG copies); with
// DICOM files that is the DICOM grid the CSV boxes are in.
#include "core/csv.h"
#include "core/error.h"
#include "core/text.h"
#include "data/image/image_io.h"
#include "data/instruct/vlm_data.h"
#include "data/sampler.h"
#include "data/vindr_cxr/litegpt_answers.h"
#include "data/vindr_cxr/vindr_cxr.h"

#include <filesystem>

namespace facet::data::vindr_cxr {
namespace {

namespace fs = std::filesystem;

class VinDrCxrLiteGpt : public Dataset, public vlm::ModalityLengths {
 public:
  VinDrCxrLiteGpt(const Config& c, const std::string& split)
      : root_(c.get<std::string>("root")),
        format_(c.get<std::string>("image_format", "jpg")),
        answer_(c.get<std::string>("answer", "grounded")),
        prompt_(c.get<std::string>("prompt", "grounding")),
        pool_(c.get<std::string>("prompt_pool", "all")),
        train_(split == "train"),
        text_(vlm::TextOptions::from(c, "minigpt_v2", "<ImageHere>", false)),
        image_(vlm::ImageOptions::from(c, "image_mode", "resize", 224)) {
    auto one_of = [&](const char* key, const std::string& v, std::initializer_list<const char*> allowed) {
      for (const char* a : allowed)
        if (v == a) return;
      fail("{}: {}: expected one of {}, got \"{}\"", c.where(key), c.full_key(key),
           join(std::vector<std::string>(allowed.begin(), allowed.end())), v);
    };
    one_of("image_format", format_, {"jpg", "png", "dicom"});
    one_of("answer", answer_, {"grounded", "global", "local"});
    one_of("prompt", prompt_, {"grounding", "vqa", "none"});
    one_of("prompt_pool", pool_, {"all", "first"});
    if (split != "train" && split != "val" && split != "test")
      fail("{}: vindr_cxr_litegpt has the splits train, val (with val_fraction) and test, not \"{}\"", c.where(), split);
    const double val_fraction = c.get_in_range<double>("val_fraction", 0.0, Range::closed_open(0, 1));
    if (split == "val" && val_fraction == 0)
      fail("{}: vindr_cxr_litegpt has no official val split; set {} to hold out train images", c.where(),
           c.full_key("val_fraction"));
    const std::string file_split = split == "test" ? "test" : "train";
    const fs::path image_dir = c.has("image_dir") ? fs::path(c.get<std::string>("image_dir")) : root_;
    files_dir_ = image_dir / file_split;
    const fs::path labels_csv = root_ / "annotations" / ("image_labels_" + file_split + ".csv");
    const fs::path boxes_csv = root_ / "annotations" / ("annotations_" + file_split + ".csv");
    for (const auto& p : {labels_csv, boxes_csv})
      if (!fs::exists(p)) fail("{}: {}: {} does not exist", c.where("root"), c.full_key("root"), p.string());
    for (LiteGptLabels& l : litegpt_labels(CsvTable::read(labels_csv), CsvTable::read(boxes_csv), c.get<bool>("dedup", true))) {
      if (split != "test" && val_fraction > 0 && (id_fraction(l.image_id) < val_fraction) != (split == "val")) continue;
      if (answer_ != "global" && !l.has_local_rows &&
          !(answer_ == "grounded" && std::find(l.global.begin(), l.global.end(), kNoFinding) != l.global.end()))
        fail("{}: image {} has no row in {}, so it has no local sentence", labels_csv.string(), l.image_id,
             boxes_csv.filename().string());
      entries_.push_back(std::move(l));
    }
    if (entries_.empty()) fail("{}: no {} images", labels_csv.string(), split);
  }

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  PaddingSpec padding() const override { return vlm::padding(text_); }
  std::vector<std::string> label_names() const override {
    std::vector<std::string> names(kLocalLabels.begin(), kLocalLabels.end());
    names.insert(names.end(), kGlobalLabels.begin(), kGlobalLabels.end());
    return names;
  }

  std::vector<int64_t> modality_lengths() const override {
    // Word counts do not depend on the coordinates, so any image size does.
    std::vector<int64_t> out;
    const std::string prompt = prompt_ == "grounding" ? kLiteGptGroundingPrompts[0] : prompt_ == "vqa" ? kLiteGptVqaPrompt : "";
    for (const auto& l : entries_) {
      const LiteGptAnswer a = answer_ == "global" || !l.has_local_rows ? LiteGptAnswer{litegpt_answer_global(l), "", ""}
                                                                       : litegpt_answer(l, 100, 100);
      const std::string& answer = answer_ == "grounded" ? (a.grounded.empty() ? a.global : a.grounded)
                                  : answer_ == "global" ? a.global : a.local;
      out.push_back(vlm::modality_length({{Turn::Role::human, prompt}, {Turn::Role::gpt, answer}}, true));
    }
    return out;
  }

  Sample get(int64_t index, uint64_t augment_seed) const override {
    const LiteGptLabels& l = entries_.at(static_cast<size_t>(index));
    const fs::path file = files_dir_ / (l.image_id + "." + format_);
    torch::Tensor image = image::read_image(file);
    if (format_ == "dicom") {  // each radiograph to 0..255
      const float lo = image.min().item<float>(), hi = image.max().item<float>();
      image = (image - lo) * (hi > lo ? 255.f / (hi - lo) : 0.f);
    }
    const auto width = static_cast<double>(image.size(2)), height = static_cast<double>(image.size(1));
    const LiteGptAnswer a = litegpt_answer(l, width, height);
    const std::string& answer = answer_ == "grounded" ? a.grounded : answer_ == "global" ? a.global : a.local;
    std::string prompt;
    if (prompt_ == "grounding") {
      size_t pick = 0;
      if (pool_ == "all" && train_)
        pick = static_cast<size_t>(mix_seed(augment_seed, static_cast<uint64_t>(index)) % kLiteGptGroundingPrompts.size());
      prompt = kLiteGptGroundingPrompts[pick];
    } else if (prompt_ == "vqa") {
      prompt = kLiteGptVqaPrompt;
    }
    const std::string instruction = prompt.empty() ? "<Img><ImageHere></Img>" : litegpt_instruction(prompt);
    Sample s;
    s.id = file.string();
    s.fields["image"] = vlm::preprocess_image(image, image_);
    if (!l.all_labels.empty()) s.fields["finding_labels"] = torch::tensor(l.all_labels, torch::kFloat);
    vlm::encode_conversation(s, {{Turn::Role::human, instruction}, {Turn::Role::gpt, answer}}, text_,
                             fmt::format("{}: image {}", files_dir_.string(), l.image_id));
    s.text["question"] = prompt;
    s.text["image_id"] = l.image_id;
    return s;
  }

 private:
  fs::path root_, files_dir_;
  std::string format_, answer_, prompt_, pool_;
  bool train_;
  vlm::TextOptions text_;
  vlm::ImageOptions image_;
  std::vector<LiteGptLabels> entries_;
};

FACET_REGISTER(dataset_registry(), "vindr_cxr_litegpt",
               "LiteGPT's VinDr-CXR instruction data: grounded/global answers built from the CSVs as the release "
               "does, [grounding]/[vqa] prompts, MiniGPT-v2 template",
               [](const Config& c, const std::string& split) { return std::make_shared<VinDrCxrLiteGpt>(c, split); });

}  // namespace
}  // namespace facet::data::vindr_cxr
