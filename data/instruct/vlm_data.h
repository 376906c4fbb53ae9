// What the vision-language datasets (llava_instruct, faba_instruct, vindr_cxr_litegpt, face_qa)
// share: image preprocessing, encoding a conversation into the fields the models read, padding,
// and the per-sample "modality length" of LLaVA's group_by_modality_length.
//
// Sample fields (the keys agreed with models/vlm):
//   input_ids       int64 [T]   the whole conversation; each image is ONE token `image_token_id`
//                               (default -200, LLaVA's IMAGE_TOKEN_INDEX) that the model replaces
//                               by the image's embeddings (and EmoLA's landmark token)
//   labels          int64 [T]   the targets, -100 outside the assistant answers (and their end token)
//   attention_mask  int64 [T]   1 (collate pads with 0)
//   prompt_ids      int64 [P]   the prompt for generating the last answer (left-padded in batches,
//                               prompt_attention_mask beside it), for `facet eval`'s generation
//   image           float [3, S, S]  normalised (zeros for a text-only sample, as LLaVA does)
//   landmarks       float [212]      EmoLA's prior vector (only when the dataset reads landmarks)
//   text: question (last human turn, image marker removed), answer (reference), prompt (rendered)
//
// Image preprocessing here is deliberately simple (OpenCV bicubic resize, mean/std); the CLIP
// processor proper lives with the towers in models/vlm. Modes:
//   pad     pad to a square with the mean colour (LLaVA's expand2square), then resize
//           (EmoLA / LLaVA-1.5 training: image_aspect_ratio pad)
//   crop    resize the shortest side, centre crop (the plain CLIP processor: EmoLA's evaluation)
//   resize  straight to S x S (LiteGPT's Resize((224, 224)))
#pragma once

#include "core/config.h"
#include "data/dataset.h"
#include "data/instruct/instruct.h"
#include "data/text/chat_template.h"
#include "data/text/tokenizer.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace facet::data::vlm {

inline constexpr std::array<double, 3> kClipMean = {0.48145466, 0.4578275, 0.40821073};
inline constexpr std::array<double, 3> kClipStd = {0.26862954, 0.26130258, 0.27577711};

struct ImageOptions {
  int64_t size = 336;
  std::string mode = "pad";  // pad | crop | resize
  std::array<double, 3> mean = kClipMean, std = kClipStd;
  // `key` names the mode's key (a dataset may read one per split); the others are shared.
  static ImageOptions from(const Config& c, const std::string& mode_key, const std::string& default_mode,
                           int64_t default_size);
};

// [C, H, W] in 0..255 (grey or RGB) -> [3, S, S] normalised.
torch::Tensor preprocess_image(const torch::Tensor& image, const ImageOptions& o);

struct TextOptions {
  std::shared_ptr<const text::Tokenizer> tokenizer;
  text::ChatOptions chat;
  int64_t image_token_id = text::kImagePlaceholder;
  // LLaVA's preprocess_multimodal: the image marker moves to the start of its turn as "<image>\n".
  bool image_first = true;
  // Reads tokenizer (path), template, system, max_length, image_token_id, pad, image_first;
  // `default_style` and `default_image_token` are the dataset's.
  static TextOptions from(const Config& c, const std::string& default_style, const std::string& default_image_token,
                          bool default_image_first);
};

// Fills input_ids, labels, attention_mask, prompt_ids and the text fields from `turns` (human
// first, ending with an answer). `where` names the sample in errors.
void encode_conversation(Sample& s, std::vector<Turn> turns, const TextOptions& o, const std::string& where);

// How these fields pad: input_ids with the tokenizer's pad id, labels -100, attention_mask 0,
// prompt_ids on the left with prompt_attention_mask.
PaddingSpec padding(const TextOptions& o);

// LLaVA's modality length: the number of whitespace-separated words over all turns, positive when
// the sample has an image, negative when it is text-only.
int64_t modality_length(const std::vector<Turn>& turns, bool has_image);

// The capability the length-grouped sampler needs from a dataset.
class ModalityLengths {
 public:
  virtual ~ModalityLengths() = default;
  virtual std::vector<int64_t> modality_lengths() const = 0;
};

// The EmoLA prior vector of a .npy file: exactly `dim` values (any shape of that many, e.g. (212,)
// or (1, 212)), else an error naming the file and the shape.
torch::Tensor read_landmark_vector(const std::filesystem::path& file, int64_t dim);

}  // namespace facet::data::vlm
