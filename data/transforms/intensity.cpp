// Intensity transforms: they change the values of the image field only, never its geometry.
#include "data/transform.h"

#include <map>

namespace facet::data {
namespace {

torch::Tensor& image_field(Sample& s, const std::string& field, std::string_view transform) {
  if (!s.fields.contains(field)) fail("{}: {}: the sample has no field \"{}\"", s.id, transform, field);
  torch::Tensor& t = s.fields[field];
  if (t.dim() != 3) fail("{}: {}: field \"{}\" is not [C, H, W]", s.id, transform, field);
  return t;
}

// Shape [C, 1, 1] for per-channel constants.
std::vector<int64_t> channel_shape(const torch::Tensor& t) {
  std::vector<int64_t> v(static_cast<size_t>(t.dim()), 1);
  v[0] = -1;
  return v;
}

// (x - mean) / std per channel; a single mean/std applies to every channel.
class Normalize : public Transform {
 public:
  explicit Normalize(const Config& c)
      : field_(c.get<std::string>("field", "image")),
        mean_(torch::tensor(c.get<std::vector<double>>("mean"), torch::kFloat)),
        std_(torch::tensor(c.get<std::vector<double>>("std"), torch::kFloat)) {
    if (mean_.numel() != std_.numel())
      fail("{}: {}: mean and std must have the same length", c.where("std"), c.prefix());
    if ((std_ <= 0).any().item<bool>()) fail("{}: {}.std: every value must be positive", c.where("std"), c.prefix());
    scale_ = 1 / std_;
    shift_ = -mean_ / std_;
    // Every 8-bit value's result per channel, by the float path's own kernel: [channels or 1, 256].
    eight_bit_values_ = torch::addcmul(shift_.view({-1, 1}), torch::arange(256, torch::kFloat).view({1, -1}),
                                       scale_.view({-1, 1}))
                            .contiguous();
  }
  void apply(Sample& s, at::Generator&) const override {
    if (!s.fields.contains(field_)) fail("{}: normalize: the sample has no field \"{}\"", s.id, field_);
    auto& x = s.fields[field_];
    if (mean_.numel() != 1 && x.size(0) != mean_.numel())
      fail("{}: normalize: field \"{}\" has {} channels, mean/std have {}", s.id, field_, x.size(0), mean_.numel());
    if (x.scalar_type() == torch::kUInt8 && x.dim() == 3) {
      x = normalize_eight_bit(x);
      return;
    }
    // One pass: x * (1 / std) + (-mean / std).
    const auto shape = channel_shape(x);
    x = torch::addcmul(shift_.view(shape), x.to(torch::kFloat), scale_.view(shape));
  }
  EightBit eight_bit_image() const override { return field_ == "image" ? EightBit::converts : EightBit::refuses; }

 private:
  // 8-bit [C, H, W] with any strides (a crop of a decoded HWC buffer, flipped or not) to contiguous
  // float in one pass, each pixel looked up among its channel's 256 precomputed values.
  torch::Tensor normalize_eight_bit(const torch::Tensor& x) const {
    const int64_t channels = x.size(0), h = x.size(1), w = x.size(2);
    const int64_t sc = x.stride(0), sy = x.stride(1), sx = x.stride(2);
    torch::Tensor out = torch::empty({channels, h, w}, torch::kFloat);
    const uint8_t* in = x.data_ptr<uint8_t>();
    float* o = out.data_ptr<float>();
    const bool per_channel = eight_bit_values_.size(0) > 1;
    for (int64_t c = 0; c < channels; ++c) {
      const float* value = eight_bit_values_.data_ptr<float>() + (per_channel ? 256 * c : 0);
      for (int64_t y = 0; y < h; ++y) {
        const uint8_t* row = in + c * sc + y * sy;
        float* dst = o + (c * h + y) * w;
        for (int64_t i = 0; i < w; ++i) dst[i] = value[row[i * sx]];
      }
    }
    return out;
  }

  std::string field_;
  torch::Tensor mean_, std_, scale_, shift_, eight_bit_values_;
};

// CT windowing: Hounsfield units clipped to [lo, hi] and mapped to [0, scale]. Several windows
// (`windows: [[lo, hi], ...]`) become several channels per input channel (MVP-Net's multi-view
// input). Presets name the windows the lesion-detection papers use (../shared/research/medical.md B.6).
class CtWindow : public Transform {
 public:
  explicit CtWindow(const Config& c) : field_(c.get<std::string>("field", "image")), scale_(c.get<double>("scale", 1.0)) {
    static const std::map<std::string, std::vector<std::pair<double, double>>> presets = {
        {"deeplesion_3dce", {{-1024, 3071}}},  // 3DCE / MULAN: the full 12-bit range
        {"satr", {{-1024, 2050}}},             // A3D / SATr
        {"mvp", {{-174, 274}, {-1493, 484}, {-534, 1425}}},  // MVP-Net: soft tissue, lung, bone-ish
        {"lung", {{-1350, 150}}},
        {"mediastinum", {{-160, 240}}},
        {"bone", {{-450, 1050}}},
        {"brain", {{0, 80}}},
    };
    if (c.has("preset")) {
      const auto name = c.get<std::string>("preset");
      auto it = presets.find(name);
      if (it == presets.end()) {
        std::vector<std::string> names;
        for (const auto& [n, w] : presets) names.push_back(n);
        fail("{}: {}.preset: unknown window \"{}\"; known: {}", c.where("preset"), c.prefix(), name, join(names));
      }
      windows_ = it->second;
    } else if (c.has("windows")) {
      const Config list = c.at("windows");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string key = fmt::format("windows[{}]", i);
        const auto w = c.get<std::vector<double>>(key);
        if (w.size() != 2) fail("{}: {}.{}: expected [lo, hi]", c.where(key), c.prefix(), key);
        windows_.emplace_back(w[0], w[1]);
      }
    } else {
      const double center = c.get<double>("center"), width = c.get<double>("width");
      windows_.emplace_back(center - width / 2, center + width / 2);
    }
    for (const auto& [lo, hi] : windows_)
      if (!(hi > lo)) fail("{}: {}: a window needs hi > lo, got [{}, {}]", c.where(), c.prefix(), lo, hi);
  }
  void apply(Sample& s, at::Generator&) const override {
    torch::Tensor& x = image_field(s, field_, "ct_window");
    std::vector<torch::Tensor> views;
    for (const auto& [lo, hi] : windows_) views.push_back((x.to(torch::kFloat).clamp(lo, hi) - lo) * (scale_ / (hi - lo)));
    // [C * W, H, W]: the windows of channel 0, then of channel 1, ...
    x = views.size() == 1 ? views[0] : torch::stack(views, 1).flatten(0, 1);
  }

 private:
  std::string field_;
  double scale_;
  std::vector<std::pair<double, double>> windows_;
};

// Random brightness, contrast and saturation factors in [1 - v, 1 + v], applied in that order
// (fixed, unlike torchvision's random order, so that a run is easy to reason about), clamped to
// [0, max_value]. Saturation needs three channels and is skipped on grey images. With p < 1 the
// jitter applies to that share of samples (torchvision's RandomApply, as in EMMA's recipe).
class ColorJitter : public Transform {
 public:
  explicit ColorJitter(const Config& c)
      : field_(c.get<std::string>("field", "image")),
        brightness_(c.get<double>("brightness", 0.0)),
        contrast_(c.get<double>("contrast", 0.0)),
        saturation_(c.get<double>("saturation", 0.0)),
        max_value_(c.get<double>("max_value", 255.0)),
        p_(c.get<double>("p", 1.0)) {
    for (const auto& [key, v] : {std::pair{"brightness", brightness_}, {"contrast", contrast_}, {"saturation", saturation_}})
      if (v < 0 || v > 1) fail("{}: {}.{}: expected a value in [0, 1], got {}", c.where(key), c.prefix(), key, v);
    if (p_ < 0 || p_ > 1) fail("{}: {}.p: expected a probability in [0, 1], got {}", c.where("p"), c.prefix(), p_);
  }
  void apply(Sample& s, at::Generator& g) const override {
    // Drawn only when p < 1, so configs without p keep their random stream.
    if (p_ < 1 && torch::rand({1}, g, torch::TensorOptions().dtype(torch::kDouble)).item<double>() >= p_) return;
    const auto factors = 1.0 + (torch::rand({3}, g, torch::TensorOptions().dtype(torch::kDouble)) * 2 - 1) *
                                   torch::tensor({brightness_, contrast_, saturation_}, torch::kDouble);
    torch::Tensor& field = image_field(s, field_, "color_jitter");
    torch::Tensor x = field.to(torch::kFloat) * factors[0].item<double>();
    const bool rgb = x.size(0) == 3;
    auto grey = [&](const torch::Tensor& t) {
      return rgb ? (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0) : t.mean(0, true);
    };
    const double contrast = factors[1].item<double>();
    x = (x - grey(x).mean()) * contrast + grey(x).mean();
    if (rgb) {
      const auto g0 = grey(x);
      x = (x - g0) * factors[2].item<double>() + g0;
    }
    field = x.clamp(0, max_value_);
  }

 private:
  std::string field_;
  double brightness_, contrast_, saturation_, max_value_, p_;
};

// x * factor (e.g. 1/255 to bring 8-bit images to [0, 1]).
class Scale : public Transform {
 public:
  explicit Scale(const Config& c) : field_(c.get<std::string>("field", "image")), factor_(c.get<double>("factor")) {}
  void apply(Sample& s, at::Generator&) const override {
    torch::Tensor& x = image_field(s, field_, "scale");
    x = x.to(torch::kFloat) * factor_;
  }

 private:
  std::string field_;
  double factor_;
};

FACET_REGISTER(transform_registry(), "normalize", "(x - mean) / std per channel of one field",
               [](const Config& c) { return std::make_shared<Normalize>(c); });
FACET_REGISTER(transform_registry(), "ct_window", "CT windowing: HU in [lo, hi] -> [0, scale]; presets, several windows",
               [](const Config& c) { return std::make_shared<CtWindow>(c); });
FACET_REGISTER(transform_registry(), "color_jitter", "Random brightness, contrast and saturation",
               [](const Config& c) { return std::make_shared<ColorJitter>(c); });
FACET_REGISTER(transform_registry(), "scale", "Multiply a field by a constant factor",
               [](const Config& c) { return std::make_shared<Scale>(c); });

}  // namespace
}  // namespace facet::data
