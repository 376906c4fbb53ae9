// The few-shot concept folders that customised text-to-image methods train on (DreamBooth, Custom
// Diffusion's CustomConcept101 `benchmark_dataset/<concept>/`, DETEX): a folder of images of one
// subject, optional foreground masks, and the prompt that names the subject with its new word.
//
//   data:
//     name: concept_images
//     root: data/cat                       # the images (jpg, png, ...), sorted by name
//     prompt: "photo of a <new1> cat"      # every image's prompt; <stem>.txt beside an image overrides it
//     masks: masks                         # optional folder under root: <stem>.png, nonzero = the subject
//     image_size: 512                      # every image resized to this square size (0: as stored)
//     eval_prompts: ["<new1> cat on the beach", ...]   # val / test: one sample per prompt, no image
//
// train: fields `image` [3, S, S] RGB 0..255 and, with masks, `mask` [1, S, S] (0/1, resized with the
// image by nearest neighbour); text `prompt`. val / test: text `prompt` only, for the model to
// generate from (stable_diffusion's forward). A mask of another size than its image, a missing
// mask, an empty folder, a prompt file that is not UTF-8 text: errors naming the file.
#include "core/error.h"
#include "core/file_io.h"
#include "core/utf8.h"
#include "data/dataset.h"
#include "data/face/face_io.h"
#include "data/image/image_io.h"
#include "data/image_folder/image_folder.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <filesystem>

namespace facet::data {
namespace {

namespace fs = std::filesystem;

// A prompt file's text, whitespace at the ends removed.
std::string read_prompt(const fs::path& path) {
  // A prompt is read at every step: a stray multi-megabyte file would stall training, not inform it.
  constexpr uintmax_t kMaxPromptBytes = 16384;
  if (fs::file_size(path) > kMaxPromptBytes)
    fail("{}: {} bytes; a prompt file holds at most {} (77 tokens are used)", path.string(), fs::file_size(path), kMaxPromptBytes);
  std::string text = read_file(path);
  if (const auto bad = first_invalid_utf8(text)) fail("{}: byte {}: the prompt is not UTF-8 text", path.string(), *bad);
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) fail("{}: the prompt file is empty", path.string());
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

class ConceptImages : public Dataset {
 public:
  ConceptImages(const Config& c, const std::string& split) : training_(split == "train") {
    image_size_ = c.get_in_range<int64_t>("image_size", 0, Range::at_least(0));
    const std::string prompt = c.get<std::string>("prompt", "");
    if (!training_) {
      c.consume("root");
      c.consume("masks");
      c.consume("prompt");
      const auto prompts = c.get<std::vector<std::string>>("eval_prompts", {});
      if (prompts.empty())
        fail("{}: {}: split {} generates from prompts: give data.eval_prompts (a list of prompts)", c.where("eval_prompts"),
             c.full_key("eval_prompts"), split);
      for (const auto& p : prompts) items_.push_back({{}, {}, p});
      return;
    }
    c.consume("eval_prompts");
    const fs::path root = c.get<std::string>("root");
    if (!fs::is_directory(root)) fail("{}: {}: {} is not a directory", c.where("root"), c.full_key("root"), root.string());
    const std::string masks = c.get<std::string>("masks", "");
    const fs::path mask_dir = masks.empty() ? fs::path() : root / masks;
    if (!masks.empty() && !fs::is_directory(mask_dir))
      fail("{}: {}: {} is not a directory", c.where("masks"), c.full_key("masks"), mask_dir.string());
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_regular_file() && image_folder::has_image_extension(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: {}: no images in {}", c.where("root"), c.full_key("root"), root.string());
    for (const auto& f : files) {
      Item item{f, {}, prompt};
      const fs::path caption = fs::path(f).replace_extension(".txt");
      if (fs::exists(caption)) item.prompt = read_prompt(caption);
      else if (prompt.empty())
        fail("{}: {}: {} has no caption file {} and data.prompt is not set", c.where("prompt"), c.full_key("prompt"), f.string(),
             caption.filename().string());
      if (!masks.empty()) {
        item.mask = mask_dir / f.filename().replace_extension(".png");
        if (!fs::exists(item.mask)) fail("{}: no mask {} for {}", c.where("masks"), item.mask.string(), f.string());
      }
      items_.push_back(std::move(item));
    }
  }

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }

  Sample get(int64_t index, uint64_t) const override {
    const Item& item = items_.at(static_cast<size_t>(index));
    Sample s;
    s.text["prompt"] = item.prompt;
    if (!training_) {
      s.id = fmt::format("prompt{}", index);
      return s;
    }
    s.id = item.image.string();
    s.fields["image"] = face::read_frame(item.image, image_size_, nullptr);
    if (!item.mask.empty()) {
      cv::Mat m = image::read_image_mat(item.mask);
      if (m.channels() != 1) cv::cvtColor(m, m, cv::COLOR_RGB2GRAY);
      const int64_t h = s.fields["image"].size(1), w = s.fields["image"].size(2);
      if (image_size_ > 0) cv::resize(m, m, cv::Size(static_cast<int>(w), static_cast<int>(h)), 0, 0, cv::INTER_NEAREST);
      else if (m.rows != h || m.cols != w)
        fail("{}: mask is {}x{}, its image {} is {}x{}", item.mask.string(), m.cols, m.rows, item.image.string(), w, h);
      s.fields["mask"] = (image::mat_to_chw(m) > 0).to(torch::kFloat);
    }
    return s;
  }

 private:
  struct Item {
    fs::path image, mask;
    std::string prompt;
  };
  bool training_;
  int64_t image_size_ = 0;
  std::vector<Item> items_;
};

FACET_REGISTER(dataset_registry(), "concept_images",
               "Few-shot concept folder for text-to-image customisation: <root>/<image> (+ <stem>.txt prompts, masks/<stem>.png); "
               "val/test: eval_prompts to generate from",
               [](const Config& c, const std::string& split) { return std::make_shared<ConceptImages>(c, split); });

}  // namespace
}  // namespace facet::data
