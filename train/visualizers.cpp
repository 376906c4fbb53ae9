// The registered visualisers (train/visualize.h).
#include "core/text.h"
#include "metrics/text_metrics.h"
#include "train/caption.h"
#include "train/visualize.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <numeric>

namespace facet::train {

VisualizerRegistry& visualizer_registry() {
  static VisualizerRegistry registry("visualizer", "visualizers");
  return registry;
}

namespace {

const cv::Scalar kGreen(80, 200, 80), kOrange(0, 150, 255), kRed(60, 60, 230), kGrey(200, 200, 200);

// Tiles of `side` pixels, each with `lines` lines of caption below, `columns` per row.
class TileSheet {
 public:
  TileSheet(int64_t n, int side, int lines, int64_t columns)
      : side_(side), caption_(6 + 15 * lines), cols_(std::min<int64_t>(columns, n)) {
    const int64_t rows = (n + cols_ - 1) / cols_;
    canvas_ = cv::Mat(static_cast<int>(rows) * (side + caption_ + pad_) + pad_,
                      static_cast<int>(cols_) * (side + pad_) + pad_, CV_8UC3, cv::Scalar(24, 24, 24));
  }

  // Draws `image` [C, H, W] (scaled to its own range, or to `window` [lo, hi] when given; not three
  // channels: the middle one in grey) into tile i; returns the factor from image pixels to tile pixels.
  double put(int64_t i, const torch::Tensor& image, const std::vector<double>& window = {}) {
    torch::Tensor x = image.detach().to(torch::kCPU, torch::kFloat);
    x = x.size(0) == 3 ? x : x.narrow(0, x.size(0) / 2, 1).expand({3, -1, -1});
    if (window.size() == 2) x = x.clamp(window[0], window[1]);
    const float lo = window.size() == 2 ? static_cast<float>(window[0]) : x.min().item<float>();
    const float hi = window.size() == 2 ? static_cast<float>(window[1]) : x.max().item<float>();
    x = hi > lo ? (x - lo) / (hi - lo) * 255.0 : torch::full_like(x, 128.0);
    const torch::Tensor hwc = x.round().clamp(0, 255).to(torch::kUInt8).flip({0}).permute({1, 2, 0}).contiguous();
    const cv::Mat bgr(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3, hwc.data_ptr<uint8_t>());
    const double scale = static_cast<double>(side_) / std::max(bgr.cols, bgr.rows);
    cv::Mat resized;
    cv::resize(bgr, resized, cv::Size(std::max(1, static_cast<int>(bgr.cols * scale)), std::max(1, static_cast<int>(bgr.rows * scale))),
               0, 0, cv::INTER_LINEAR);
    resized.copyTo(canvas_(cv::Rect(x0(i), y0(i), resized.cols, resized.rows)));
    return scale;
  }

  // Caption line `line` of tile i: a head, then coloured items.
  void caption(int64_t i, int line, const std::string& head, const std::vector<std::pair<std::string, cv::Scalar>>& items) {
    put_caption(canvas_, x0(i) + 2, y0(i) + side_ + 13 + 15 * line, x0(i) + side_ - 2, head, items);
  }

  // A box (x1, y1, x2, y2 in image pixels) on tile i, with an optional label above it.
  void box(int64_t i, double scale, const float* b, const cv::Scalar& colour, const std::string& label) {
    const cv::Point p1(x0(i) + static_cast<int>(b[0] * scale), y0(i) + static_cast<int>(b[1] * scale));
    const cv::Point p2(x0(i) + static_cast<int>(b[2] * scale), y0(i) + static_cast<int>(b[3] * scale));
    cv::rectangle(canvas_, p1, p2, colour, 1, cv::LINE_AA);
    if (!label.empty())
      cv::putText(canvas_, label, {p1.x, std::max(p1.y - 2, y0(i) + 8)}, cv::FONT_HERSHEY_SIMPLEX, 0.33, colour, 1,
                  cv::LINE_AA);
  }

  Png encode() const {
    std::vector<uchar> encoded;
    if (!cv::imencode(".png", canvas_, encoded)) fail("visualizer: PNG encoding failed");
    return {std::string(encoded.begin(), encoded.end()), canvas_.rows, canvas_.cols, 3};
  }

 private:
  int x0(int64_t i) const { return pad_ + static_cast<int>(i % cols_) * (side_ + pad_); }
  int y0(int64_t i) const { return pad_ + static_cast<int>(i / cols_) * (side_ + caption_ + pad_); }

  int side_, caption_, pad_ = 4;
  int64_t cols_;
  cv::Mat canvas_;
};

const torch::Tensor* find_field(const data::Batch& batch, const std::string& name) {
  return batch.fields.contains(name) ? &batch.fields.at(name) : nullptr;
}

std::string label_name(const std::vector<std::string>& names, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(i)] : std::to_string(i);
}

// Sample indices 0..n-1 with those whose `field` (a mask) has any foreground first, in order
// (an evaluation batch of consecutive slices often starts without one); 0..n-1 without the field.
std::vector<int64_t> foreground_first(const data::Batch& batch, const std::string& field, int64_t n) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const torch::Tensor* mask = find_field(batch, field);
  if (!mask || mask->size(0) != n) return order;
  const torch::Tensor foreground = mask->detach().to(torch::kCPU).flatten(1).gt(0).any(1);
  std::stable_partition(order.begin(), order.end(), [&](int64_t i) { return foreground[i].item<bool>(); });
  return order;
}

int64_t shown(const data::Batch& batch, int64_t max_images) {
  const torch::Tensor* image = find_field(batch, "image");
  return image ? std::min(image->size(0), max_images) : 0;
}

// The batch's images as they are.
class ImageGrid : public Visualizer {
 public:
  std::string tag() const override { return "inputs"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const torch::Tensor* image = find_field(in.batch, "image");
    if (!image || image->dim() != 4 || shown(in.batch, max_images) == 0) return std::nullopt;
    return image_grid_png(*image, max_images);
  }
};

// Multi-label tasks (AUs, findings): true labels green where predicted and orange where missed,
// then the false positives in red.
class MultiLabel : public Visualizer {
 public:
  explicit MultiLabel(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")), target_(c.get<std::string>("target", "labels")),
        mask_(c.get<std::string>("mask", "label_mask")), threshold_(c.get<double>("threshold", 0.5)) {}
  std::string tag() const override { return "labels"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const torch::Tensor* image = find_field(in.batch, "image");
    const torch::Tensor* truth = find_field(in.batch, target_);
    if (!image || !in.outputs.contains(logits_) || in.outputs.at(logits_).dim() != 2) return std::nullopt;
    if (!truth) return predicted_only(in, max_images);  // prediction: no truth to compare with
    if (in.outputs.at(logits_).sizes() != truth->sizes()) return std::nullopt;
    torch::Tensor t = truth->to(torch::kCPU, torch::kFloat).clone();
    if (const torch::Tensor* mask = find_field(in.batch, mask_)) t.masked_fill_(mask->to(torch::kCPU) < 0.5, -1);
    const torch::Tensor p = (torch::sigmoid(in.outputs.at(logits_).to(torch::kCPU, torch::kFloat)) >= threshold_).to(torch::kFloat);
    return labelled_grid_png(*image, t, p, in.label_names, max_images);
  }

 private:
  // Each image with the labels predicted above the threshold and their probabilities.
  Png predicted_only(const VisualInput& in, int64_t max_images) const {
    const torch::Tensor& image = in.batch.fields.at("image");
    const int64_t n = std::min(image.size(0), max_images);
    const torch::Tensor prob = torch::sigmoid(in.outputs.at(logits_).to(torch::kCPU, torch::kFloat));
    TileSheet sheet(n, std::max<int>(160, static_cast<int>(image.size(3))), 2, 6);
    for (int64_t i = 0; i < n; ++i) {
      sheet.put(i, image[i]);
      std::vector<std::pair<std::string, cv::Scalar>> items;
      for (int64_t l = 0; l < prob.size(1); ++l)
        if (prob[i][l].item<double>() >= threshold_) items.emplace_back(label_name(in.label_names, l), kOrange);
      sheet.caption(i, 0, "P:", items);
    }
    return sheet.encode();
  }

  std::string logits_, target_, mask_;
  double threshold_;
};

// Single-label classification: the true and the predicted class with its probability.
class Classification : public Visualizer {
 public:
  explicit Classification(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")), target_(c.get<std::string>("target", "label")) {}
  std::string tag() const override { return "classes"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const int64_t n = shown(in.batch, max_images);
    if (n == 0 || !in.outputs.contains(logits_)) return std::nullopt;
    const torch::Tensor prob = torch::softmax(in.outputs.at(logits_).to(torch::kCPU, torch::kFloat), 1);
    const auto [p, cls] = prob.max(1);
    const torch::Tensor* truth = find_field(in.batch, target_);
    TileSheet sheet(n, std::max<int>(96, static_cast<int>(in.batch.fields.at("image").size(3))), 2, 8);
    for (int64_t i = 0; i < n; ++i) {
      sheet.put(i, in.batch.fields.at("image")[i]);
      const int64_t predicted = cls[i].item<int64_t>();
      const bool right = truth && truth->to(torch::kCPU)[i].item<int64_t>() == predicted;
      if (truth) sheet.caption(i, 0, "T:", {{label_name(in.label_names, truth->to(torch::kCPU)[i].item<int64_t>()), kGrey}});
      sheet.caption(i, 1, "P:", {{fmt::format("{} {:.2f}", label_name(in.label_names, predicted), p[i].item<float>()),
                                  truth ? (right ? kGreen : kRed) : kGrey}});
    }
    return sheet.encode();
  }

 private:
  std::string logits_, target_;
};

// Detection: true boxes in green, predicted ones above `score_threshold` in orange with their
// scores (and class names when the outputs carry labels). `detection` (the lesion detectors'): the
// key (middle) slice of a multi-slice input, windowed with `window: [lo, hi]` when set (e.g. HU).
class Boxes : public Visualizer {
 public:
  Boxes(const Config& c, std::string tag, double threshold)
      : tag_(std::move(tag)), threshold_(c.get<double>("score_threshold", threshold)), side_(c.get<int>("side", 256)),
        window_(c.get<std::vector<double>>("window", {})) {
    if (!window_.empty() && (window_.size() != 2 || !(window_[0] < window_[1])))
      fail("{}: {}: expected [lo, hi] with lo < hi", c.where("window"), c.full_key("window"));
  }
  std::string tag() const override { return tag_; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const int64_t n = shown(in.batch, max_images);
    const auto predicted = in.outputs.ragged.find("boxes");
    if (n == 0 || predicted == in.outputs.ragged.end()) return std::nullopt;
    const auto scores = in.outputs.ragged.find("scores");
    const auto labels = in.outputs.ragged.find("labels");
    const auto truth = in.batch.ragged.find("boxes");
    TileSheet sheet(n, side_, 1, 4);
    for (int64_t i = 0; i < n; ++i) {
      const double scale = sheet.put(i, in.batch.fields.at("image")[i], window_);
      int64_t found = 0, truths = 0;
      if (truth != in.batch.ragged.end()) {
        const torch::Tensor t = truth->second[static_cast<size_t>(i)].to(torch::kCPU, torch::kFloat).contiguous();
        truths = t.size(0);
        for (int64_t k = 0; k < truths; ++k) sheet.box(i, scale, t[k].data_ptr<float>(), kGreen, "");
      }
      const torch::Tensor b = predicted->second[static_cast<size_t>(i)].to(torch::kCPU, torch::kFloat).contiguous();
      const torch::Tensor s = scores != in.outputs.ragged.end()
                                  ? scores->second[static_cast<size_t>(i)].to(torch::kCPU, torch::kFloat)
                                  : torch::ones({b.size(0)});
      for (int64_t k = 0; k < b.size(0); ++k) {
        const float score = s[k].item<float>();
        if (score < threshold_) continue;
        ++found;
        std::string label = fmt::format("{:.2f}", score);
        if (labels != in.outputs.ragged.end())
          label = label_name(in.label_names, labels->second[static_cast<size_t>(i)][k].item<int64_t>()) + " " + label;
        sheet.box(i, scale, b[k].data_ptr<float>(), kOrange, label);
      }
      sheet.caption(i, 0, "", {{fmt::format("{} true", truths), kGreen}, {fmt::format("{} >= {:.2f}", found, threshold_), kOrange}});
    }
    return sheet.encode();
  }

 private:
  std::string tag_;
  double threshold_;
  int side_;
  std::vector<double> window_;
};

// Vision-language: the image with the generated text (and the reference, when the batch has it),
// wrapped under the tile.
// Vision-language answers: each image with its question (grey), the generated answer (orange) and
// the reference (green), wrapped over the caption lines.
class ImageText : public Visualizer {
 public:
  explicit ImageText(const Config& c)
      : text_(c.get<std::string>("text", "generated")), reference_(c.get<std::string>("reference", "answer")),
        question_(c.get<std::string>("question", "question")), side_(c.get<int>("side", 224)), lines_(c.get<int>("lines", 9)) {}
  std::string tag() const override { return "answers"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const int64_t n = shown(in.batch, max_images);
    const auto generated = in.outputs.text.find(text_);
    if (n == 0 || generated == in.outputs.text.end()) return std::nullopt;
    const auto reference = in.batch.text.find(reference_);
    const auto question = in.batch.text.find(question_);
    TileSheet sheet(n, side_, lines_, 4);
    for (int64_t i = 0; i < n; ++i) {
      sheet.put(i, in.batch.fields.at("image")[i]);
      int line = 0;
      auto write = [&](const std::string& head, const std::string& text, const cv::Scalar& colour, int budget) {
        wrap(sheet, i, line, head, text, colour, std::min(budget, lines_ - line), side_);
      };
      const auto k = static_cast<size_t>(i);
      const bool has_reference = reference != in.batch.text.end();
      if (question != in.batch.text.end()) write("Q:", question->second[k], kGrey, 2);
      write("A:", generated->second[k], kOrange, has_reference ? (lines_ - line + 1) / 2 : lines_ - line);
      if (has_reference) write("R:", reference->second[k], kGreen, lines_ - line);
    }
    return sheet.encode();
  }

  // `text` over at most `budget` caption lines of tile i from `line` on (words kept whole where they fit).
  static void wrap(TileSheet& sheet, int64_t i, int& line, const std::string& head, const std::string& text,
                   const cv::Scalar& colour, int budget, int side = 224) {
    std::string rest = text.empty() ? std::string("(empty)") : text;
    std::replace(rest.begin(), rest.end(), '\n', ' ');
    for (int k = 0; k < budget && !rest.empty(); ++k, ++line) {
      // The longest start of `rest` that fits the line as drawn (measured, not estimated).
      const int room = side - 4 - (k == 0 && !head.empty() ? caption_width(head) + 5 : 0);
      size_t cut = std::min(rest.size(), static_cast<size_t>(std::max(room, 3) / 3));  // no glyph is under 3 px
      while (cut > 1 && caption_width(rest.substr(0, cut)) > room) --cut;
      if (cut < rest.size())
        if (const size_t space = rest.rfind(' ', cut); space != std::string::npos && space > 0) cut = space;
      sheet.caption(i, line, k == 0 ? head : "", {{rest.substr(0, cut), colour}});
      rest = rest.substr(std::min(rest.size(), cut + 1));
    }
  }

 private:
  std::string text_, reference_, question_;
  int side_, lines_;
};

// LiteGPT's grounding answers drawn on the radiograph: the boxes of the generated answer
// ("<p>finding</p> {<x1><y1><x2><y2>}", 0-100 grid, parsed as the litegpt_boxes metric parses them)
// in orange, the reference answer's in green, both scaled to the image's pixels; below, the answer.
class LiteGptBoxes : public Visualizer {
 public:
  explicit LiteGptBoxes(const Config& c)
      : text_(c.get<std::string>("text", "generated")), reference_(c.get<std::string>("reference", "answer")),
        side_(c.get<int>("side", 256)), lines_(c.get<int>("lines", 6)) {}
  std::string tag() const override { return "boxes"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const int64_t n = shown(in.batch, max_images);
    const auto generated = in.outputs.text.find(text_);
    if (n == 0 || generated == in.outputs.text.end()) return std::nullopt;
    const auto reference = in.batch.text.find(reference_);
    TileSheet sheet(n, side_, lines_, 4);
    for (int64_t i = 0; i < n; ++i) {
      const torch::Tensor image = in.batch.fields.at("image")[i];
      const double scale = sheet.put(i, image);
      // The grid's 0-100 spans the (square) image the model saw.
      const double to_pixels = static_cast<double>(image.size(-1)) / 100.0;
      auto draw_boxes = [&](const std::string& text, const cv::Scalar& colour) {
        for (const auto& b : metrics::text::litegpt_parse_boxes(text)) {
          const float xyxy[4] = {float(b.box[0] * to_pixels), float(b.box[1] * to_pixels), float(b.box[2] * to_pixels),
                                 float(b.box[3] * to_pixels)};
          sheet.box(i, scale, xyxy, colour, b.name);
        }
      };
      const auto k = static_cast<size_t>(i);
      if (reference != in.batch.text.end()) draw_boxes(reference->second[k], kGreen);
      draw_boxes(generated->second[k], kOrange);
      int line = 0;
      // The sentences without boxes and <p></p> tags (the boxes are drawn).
      auto plain = [](const std::string& text) {
        std::string out = metrics::text::litegpt_remove_boxes(text);
        for (const std::string tag : {"<p>", "</p>"})
          for (size_t at = out.find(tag); at != std::string::npos; at = out.find(tag)) out.erase(at, tag.size());
        return out;
      };
      ImageText::wrap(sheet, i, line, "A:", plain(generated->second[k]), kOrange,
                      reference != in.batch.text.end() ? lines_ / 2 : lines_, side_);
      if (reference != in.batch.text.end())
        ImageText::wrap(sheet, i, line, "R:", plain(reference->second[k]), kGreen, lines_ - line, side_);
    }
    return sheet.encode();
  }

 private:
  std::string text_, reference_;
  int side_, lines_;
};

// Generative models: a grid of the samples they produced (outputs[`samples`], [B, C, H, W]).
class Samples : public Visualizer {
 public:
  explicit Samples(const Config& c) : key_(c.get<std::string>("samples", "samples")) {}
  std::string tag() const override { return "samples"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    if (!in.outputs.contains(key_) || in.outputs.at(key_).dim() != 4) return std::nullopt;
    return image_grid_png(in.outputs.at(key_), max_images);
  }

 private:
  std::string key_;
};

// Pseudo-healthy synthesis: per sample (those with a lesion first) the input, the output on the
// input's intensity window (so what changed shows as what changed), and the difference input -
// output on its own range.
class PseudoHealthyPictures : public Visualizer {
 public:
  explicit PseudoHealthyPictures(const Config& c)
      : key_(c.get<std::string>("output", "pseudo_healthy")), image_(c.get<std::string>("image", "image")),
        side_(c.get<int>("side", 160)) {}
  std::string tag() const override { return "pseudo_healthy"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const torch::Tensor* image = find_field(in.batch, image_);
    if (!image || !in.outputs.contains(key_) || in.outputs.at(key_).sizes() != image->sizes() || image->dim() != 4)
      return std::nullopt;
    const int64_t n = std::min(image->size(0), max_images);
    if (n == 0) return std::nullopt;
    const torch::Tensor x = image->detach().to(torch::kCPU, torch::kFloat);
    const torch::Tensor y = in.outputs.at(key_).detach().to(torch::kCPU, torch::kFloat);
    const std::vector<int64_t> order = foreground_first(in.batch, "mask", x.size(0));
    TileSheet sheet(3 * n, side_, 1, 3);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = order[static_cast<size_t>(k)];
      const std::vector<double> window{x[i].min().item<double>(), x[i].max().item<double>()};
      sheet.put(3 * k, x[i], window);
      sheet.caption(3 * k, 0, in.batch.ids.size() > static_cast<size_t>(i) ? in.batch.ids[static_cast<size_t>(i)] : "input", {});
      sheet.put(3 * k + 1, y[i], window);
      sheet.caption(3 * k + 1, 0, "pseudo-healthy", {});
      sheet.put(3 * k + 2, x[i] - y[i]);
      sheet.caption(3 * k + 2, 0, "input - output", {});
    }
    return sheet.encode();
  }

 private:
  std::string key_, image_;
  int side_;
};

// Segmentation: per sample (those with a foreground in the truth first) the input, the true class
// map and the predicted one (argmax of the logits), the maps on the classes' range.
class SegmentationPictures : public Visualizer {
 public:
  explicit SegmentationPictures(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")), target_(c.get<std::string>("target", "mask")),
        image_(c.get<std::string>("image", "image")), side_(c.get<int>("side", 160)) {}
  std::string tag() const override { return "segmentation"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    const torch::Tensor* image = find_field(in.batch, image_);
    if (!image || image->dim() != 4 || !in.outputs.contains(logits_) || in.outputs.at(logits_).dim() != 4) return std::nullopt;
    const torch::Tensor logits = in.outputs.at(logits_).detach().to(torch::kCPU, torch::kFloat);
    if (logits.size(0) != image->size(0) || logits.size(2) != image->size(2) || logits.size(3) != image->size(3)) return std::nullopt;
    const int64_t n = std::min(image->size(0), max_images);
    if (n == 0) return std::nullopt;
    const std::vector<double> classes{0.0, static_cast<double>(std::max<int64_t>(1, logits.size(1) - 1))};
    const torch::Tensor predicted = logits.argmax(1, true).to(torch::kFloat);
    const torch::Tensor* truth = find_field(in.batch, target_);
    const bool has_truth = truth && truth->size(0) == image->size(0) && truth->numel() == predicted.numel();
    const std::vector<int64_t> order = foreground_first(in.batch, has_truth ? target_ : "", image->size(0));
    const int64_t columns = has_truth ? 3 : 2;
    TileSheet sheet(columns * n, side_, 1, columns);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = order[static_cast<size_t>(k)], at = columns * k;
      sheet.put(at, (*image)[i]);
      sheet.caption(at, 0, in.batch.ids.size() > static_cast<size_t>(i) ? in.batch.ids[static_cast<size_t>(i)] : "input", {});
      if (has_truth) {
        sheet.put(at + 1, truth->detach().to(torch::kCPU, torch::kFloat)[i].view_as(predicted[i]), classes);
        sheet.caption(at + 1, 0, "truth", {});
      }
      sheet.put(at + columns - 1, predicted[i], classes);
      sheet.caption(at + columns - 1, 0, "predicted", {});
    }
    return sheet.encode();
  }

 private:
  std::string logits_, target_, image_;
  int side_;
};

// Text-to-image: each generated sample (in [0, 1]) captioned with the prompt it was made from.
class PromptedSamples : public Visualizer {
 public:
  explicit PromptedSamples(const Config& c)
      : key_(c.get<std::string>("samples", "samples")), prompt_(c.get<std::string>("prompt", "prompt")),
        side_(c.get<int>("side", 256)), lines_(c.get<int>("lines", 3)) {}
  std::string tag() const override { return "samples"; }
  std::optional<Png> draw(const VisualInput& in, int64_t max_images) const override {
    if (!in.outputs.contains(key_) || in.outputs.at(key_).dim() != 4) return std::nullopt;
    const torch::Tensor& samples = in.outputs.at(key_);
    const int64_t n = std::min(samples.size(0), max_images);
    if (n == 0) return std::nullopt;
    const auto from_outputs = in.outputs.text.find(prompt_);
    const auto from_batch = in.batch.text.find(prompt_);
    const std::vector<std::string>* prompts = from_outputs != in.outputs.text.end() ? &from_outputs->second
                                              : from_batch != in.batch.text.end()   ? &from_batch->second
                                                                                    : nullptr;
    TileSheet sheet(n, side_, prompts ? lines_ : 0, 4);
    for (int64_t i = 0; i < n; ++i) {
      sheet.put(i, samples[i], {0.0, 1.0});
      int line = 0;
      if (prompts) ImageText::wrap(sheet, i, line, "", (*prompts)[static_cast<size_t>(i)], kGrey, lines_, side_);
    }
    return sheet.encode();
  }

 private:
  std::string key_, prompt_;
  int side_, lines_;
};

FACET_REGISTER(visualizer_registry(), "image_grid", "The batch's input images",
               [](const Config&) { return std::make_shared<ImageGrid>(); });
FACET_REGISTER(visualizer_registry(), "multilabel", "Faces with true / predicted labels (logits, target, mask, threshold)",
               [](const Config& c) { return std::make_shared<MultiLabel>(c); });
FACET_REGISTER(visualizer_registry(), "classification", "Images with the true and predicted class (logits, target)",
               [](const Config& c) { return std::make_shared<Classification>(c); });
FACET_REGISTER(visualizer_registry(), "boxes", "True and predicted boxes with scores (score_threshold, side)",
               [](const Config& c) { return std::make_shared<Boxes>(c, "boxes", 0.3); });
FACET_REGISTER(visualizer_registry(), "detection",
               "Lesion detection: the key slice (windowed: window [lo, hi]), true boxes and detections with scores "
               "(score_threshold, window, side)",
               [](const Config& c) { return std::make_shared<Boxes>(c, "detection", 0.5); });
FACET_REGISTER(visualizer_registry(), "image_text",
               "Images with the question, the generated answer and the reference (text, reference, question, side, lines)",
               [](const Config& c) { return std::make_shared<ImageText>(c); });
FACET_REGISTER(visualizer_registry(), "litegpt_boxes",
               "LiteGPT: radiographs with the boxes of the generated grounding answer (orange) and the reference's "
               "(green), 0-100 grid to pixels (text, reference, side, lines)",
               [](const Config& c) { return std::make_shared<LiteGptBoxes>(c); });
FACET_REGISTER(visualizer_registry(), "prompted_samples",
               "Text-to-image: generated samples in [0, 1], each captioned with its prompt (samples, prompt, side, lines)",
               [](const Config& c) { return std::make_shared<PromptedSamples>(c); });
FACET_REGISTER(visualizer_registry(), "pseudo_healthy",
               "Pseudo-healthy synthesis: input, output on the input's window, and their difference (output, image, side)",
               [](const Config& c) { return std::make_shared<PseudoHealthyPictures>(c); });
FACET_REGISTER(visualizer_registry(), "segmentation",
               "Segmentation: input, true and predicted class maps (logits, target, image, side)",
               [](const Config& c) { return std::make_shared<SegmentationPictures>(c); });
FACET_REGISTER(visualizer_registry(), "samples", "A grid of generated samples (samples)",
               [](const Config& c) { return std::make_shared<Samples>(c); });

}  // namespace
}  // namespace facet::train
