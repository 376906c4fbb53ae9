#include "data/instruct/vlm_data.h"

#include "core/error.h"
#include "core/text.h"
#include "data/npy.h"

#include <opencv2/imgproc.hpp>

#include <sstream>

namespace facet::data::vlm {

ImageOptions ImageOptions::from(const Config& c, const std::string& mode_key, const std::string& default_mode,
                                int64_t default_size) {
  ImageOptions o;
  o.size = c.get_in_range<int64_t>("image_size", default_size, Range::at_least(8));
  o.mode = c.get<std::string>(mode_key, default_mode);
  if (o.mode != "pad" && o.mode != "crop" && o.mode != "resize")
    fail("{}: {}: expected pad, crop or resize, got \"{}\"", c.where(mode_key), c.full_key(mode_key), o.mode);
  for (const char* key : {"image_mean", "image_std"}) {
    if (!c.has(key)) continue;
    const auto v = c.get<std::vector<double>>(key);
    if (v.size() != 3) fail("{}: {}: expected 3 values (R, G, B), got {}", c.where(key), c.full_key(key), v.size());
    auto& dst = std::string(key) == "image_mean" ? o.mean : o.std;
    std::copy(v.begin(), v.end(), dst.begin());
  }
  for (double s : o.std)
    if (!(s > 0)) fail("{}: {}: expected positive values", c.where("image_std"), c.full_key("image_std"));
  return o;
}

torch::Tensor preprocess_image(const torch::Tensor& input, const ImageOptions& o) {
  TORCH_CHECK(input.dim() == 3 && (input.size(0) == 1 || input.size(0) == 3 || input.size(0) == 4),
              "preprocess_image: expected [1|3|4, H, W], got ", input.sizes());
  torch::Tensor image = input.to(torch::kFloat);
  if (image.size(0) == 4) image = image.narrow(0, 0, 3);
  if (image.size(0) == 1) image = image.expand({3, image.size(1), image.size(2)});
  image = image.permute({1, 2, 0}).contiguous();  // HWC for OpenCV
  int64_t h = image.size(0), w = image.size(1);
  if (o.mode == "pad" && h != w) {
    // expand2square: the image centred (offsets floored) on a square of the mean colour.
    const int64_t side = std::max(h, w);
    torch::Tensor square = torch::empty({side, side, 3});
    for (int64_t ch = 0; ch < 3; ++ch) square.select(2, ch).fill_(static_cast<float>(o.mean[size_t(ch)] * 255));
    square.narrow(0, (side - h) / 2, h).narrow(1, (side - w) / 2, w).copy_(image);
    image = square;
    h = w = side;
  }
  const cv::Mat src(static_cast<int>(h), static_cast<int>(w), CV_32FC3, image.data_ptr<float>());
  cv::Mat resized;
  const int s = static_cast<int>(o.size);
  if (o.mode == "crop") {
    // The shortest side to S (the other rounded as CLIPImageProcessor does), then the centre S x S.
    const double scale = static_cast<double>(s) / static_cast<double>(std::min(h, w));
    const int nh = h <= w ? s : static_cast<int>(static_cast<double>(h) * scale);
    const int nw = w <= h ? s : static_cast<int>(static_cast<double>(w) * scale);
    cv::resize(src, resized, cv::Size(nw, nh), 0, 0, cv::INTER_CUBIC);
    resized = resized(cv::Rect((nw - s) / 2, (nh - s) / 2, s, s)).clone();
  } else {
    cv::resize(src, resized, cv::Size(s, s), 0, 0, cv::INTER_CUBIC);
  }
  torch::Tensor out = torch::from_blob(resized.data, {s, s, 3}, torch::kFloat).clone().permute({2, 0, 1}).contiguous();
  out = out.clamp(0, 255) / 255;
  const auto mean = torch::tensor({o.mean[0], o.mean[1], o.mean[2]}, torch::kFloat).view({3, 1, 1});
  const auto stdv = torch::tensor({o.std[0], o.std[1], o.std[2]}, torch::kFloat).view({3, 1, 1});
  return (out - mean) / stdv;
}

TextOptions TextOptions::from(const Config& c, const std::string& default_style, const std::string& default_image_token,
                              bool default_image_first) {
  TextOptions o;
  const std::string path = c.get<std::string>("tokenizer");
  try {
    auto tok = std::make_shared<text::Tokenizer>(text::Tokenizer::load(path));
    if (c.has("pad")) tok->set_pad(c.get<std::string>("pad"));
    o.tokenizer = std::move(tok);
  } catch (const Error& e) {
    fail("{}: {}: {}", c.where("tokenizer"), c.full_key("tokenizer"), e.what());
  }
  o.chat.style = c.get<std::string>("template", default_style);
  if (o.chat.style != "llama2" && o.chat.style != "vicuna_v1" && o.chat.style != "minigpt_v2")
    fail("{}: {}: expected llama2, vicuna_v1 or minigpt_v2, got \"{}\"", c.where("template"), c.full_key("template"),
         o.chat.style);
  if (c.has("system")) o.chat.system = c.get<std::string>("system");
  o.chat.image_token = c.get<std::string>("image_marker", default_image_token);
  o.chat.end_sym = c.get<std::string>("end_sym", o.chat.style == "minigpt_v2" ? "</s>" : "\n");
  o.chat.max_length = c.get_in_range<int64_t>("max_length", 2048, Range::at_least(0));
  o.image_token_id = c.get<int64_t>("image_token_id", text::kImagePlaceholder);
  o.image_first = c.get<bool>("image_first", default_image_first);
  return o;
}

namespace {

std::string strip(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\n\r");
  return std::string(s.substr(b, e - b + 1));
}

std::string remove_all(std::string s, std::string_view what) {
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at)) s.erase(at, what.size());
  return s;
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids, int64_t image_token_id) {
  torch::Tensor t = torch::tensor(ids, torch::kInt64);
  if (image_token_id != text::kImagePlaceholder) t.masked_fill_(t == text::kImagePlaceholder, image_token_id);
  return t;
}

}  // namespace

void encode_conversation(Sample& s, std::vector<Turn> turns, const TextOptions& o, const std::string& where) {
  if (turns.size() < 2 || turns.size() % 2 != 0)
    fail("{}: expected alternating human and gpt turns ending with an answer, got {} turn(s)", where, turns.size());
  const std::string& marker = o.chat.image_token;
  if (o.image_first)
    for (Turn& t : turns)
      if (t.role == Turn::Role::human && t.text.find(marker) != std::string::npos)
        t.text = strip(marker + "\n" + strip(remove_all(t.text, marker)));
  try {
    const text::EncodedChat chat = text::encode_conversation(*o.tokenizer, turns, o.chat);
    std::vector<Turn> prompt_turns(turns.begin(), turns.end() - 1);
    const std::vector<int64_t> prompt = text::encode_prompt(*o.tokenizer, prompt_turns, o.chat);
    s.fields["input_ids"] = ids_tensor(chat.input_ids, o.image_token_id);
    s.fields["labels"] = torch::tensor(chat.labels, torch::kInt64);
    s.fields["attention_mask"] = torch::ones({static_cast<int64_t>(chat.input_ids.size())}, torch::kInt64);
    s.fields["prompt_ids"] = ids_tensor(prompt, o.image_token_id);
    s.text["prompt"] = text::render(prompt_turns, o.chat, true);
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  s.text["question"] = strip(remove_all(turns[turns.size() - 2].text, marker));
  s.text["answer"] = turns.back().text;
}

PaddingSpec padding(const TextOptions& o) {
  PaddingSpec p;
  p["input_ids"] = {static_cast<double>(o.tokenizer->pad_id), false, ""};
  p["labels"] = {static_cast<double>(kIgnoreIndex), false, ""};
  p["attention_mask"] = {0, false, ""};
  p["prompt_ids"] = {static_cast<double>(o.tokenizer->pad_id), true, "prompt_attention_mask"};
  return p;
}

int64_t modality_length(const std::vector<Turn>& turns, bool has_image) {
  int64_t words = 0;
  for (const Turn& t : turns) {
    std::istringstream in(t.text);
    for (std::string w; in >> w;) ++words;
  }
  return has_image ? words : -words;
}

torch::Tensor read_landmark_vector(const std::filesystem::path& file, int64_t dim) {
  const NpyArray a = read_npy(file);
  if (static_cast<int64_t>(a.values.size()) != dim) {
    std::vector<std::string> dims;
    for (int64_t d : a.shape) dims.push_back(std::to_string(d));
    fail("{}: expected a landmark vector of {} values (EmoLA's 106 x 2 prior), got shape ({})", file.string(), dim,
         join(dims, ", "));
  }
  return torch::tensor(a.values, torch::kDouble).to(torch::kFloat);
}

}  // namespace facet::data::vlm
