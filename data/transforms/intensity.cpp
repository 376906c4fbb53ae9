// Intensity transforms: they change the values of the image field only, never its geometry.
#include "data/batch_slots.h"
#include "data/pooled_memory.h"
#include "data/transform.h"
#include "data/transforms/eight_bit_normalize.h"

#include <map>

namespace facet::data {
namespace {

void require_chw(const Sample& s, const std::string& field, const torch::Tensor& t, std::string_view transform) {
  if (t.dim() != 3) fail("{}: {}: field \"{}\" is not [C, H, W]", s.id, transform, field);
}

torch::Tensor& image_field(Sample& s, const std::string& field, std::string_view transform) {
  if (!s.fields.contains(field)) fail("{}: {}: the sample has no field \"{}\"", s.id, transform, field);
  torch::Tensor& t = s.fields[field];
  require_chw(s, field, t, transform);
  return t;
}

// Shape [C, 1, 1] for per-channel constants.
std::vector<int64_t> channel_shape(const torch::Tensor& t) {
  std::vector<int64_t> v(static_cast<size_t>(t.dim()), 1);
  v[0] = -1;
  return v;
}

// normalize's std: as many values as the mean, all positive.
torch::Tensor checked_std(const Config& c, int64_t mean_count) {
  const auto std = torch::tensor(c.get<std::vector<double>>("std"), torch::kFloat);
  if (std.numel() != mean_count) fail("{}: {}: mean and std must have the same length", c.where("std"), c.prefix());
  if ((std <= 0).any().item<bool>()) fail("{}: {}.std: every value must be positive", c.where("std"), c.prefix());
  return std;
}

// (x - mean) / std per channel; a single mean/std applies to every channel.
class Normalize : public Transform {
 public:
  explicit Normalize(const Config& c)
      : field_(c.get<std::string>("field", "image")),
        mean_(torch::tensor(c.get<std::vector<double>>("mean"), torch::kFloat)),
        std_(checked_std(c, mean_.numel())),
        scale_(1 / std_),
        shift_(-mean_ / std_),
        eight_bit_(scale_, shift_) {}
  void apply(Sample& s, at::Generator&) const override {
    if (!s.fields.contains(field_)) fail("{}: normalize: the sample has no field \"{}\"", s.id, field_);
    auto& x = s.fields[field_];
    check_elementwise(s, x);
    // Written into the sample's row of the batch when the loader offers one (data/batch_slots.h).
    torch::Tensor out = BatchSlots::output(field_, x.sizes(), torch::kFloat);
    if (x.scalar_type() == torch::kUInt8 && x.dim() == 3) {
      eight_bit_(x, out);
    } else {
      // One pass: x * (1 / std) + (-mean / std).
      const auto shape = channel_shape(x);
      torch::addcmul_out(out, shift_.view(shape), x.to(torch::kFloat), scale_.view(shape));
    }
    x = std::move(out);
  }
  EightBit eight_bit_image() const override { return field_ == "image" ? EightBit::converts : EightBit::refuses; }

  const std::string* elementwise_field() const override { return &field_; }
  void check_elementwise(const Sample& s, const torch::Tensor& x) const override {
    if (mean_.numel() != 1 && (x.dim() == 0 || x.size(0) != mean_.numel()))
      fail("{}: normalize: field \"{}\" has {} channels, mean/std have {}", s.id, field_, x.dim() == 0 ? 0 : x.size(0),
           mean_.numel());
  }
  void map_values(float* values, int64_t n, int64_t channel) const override { eight_bit_.map(values, n, channel); }
  bool writes_batch_row() const override { return true; }

 private:
  std::string field_;
  torch::Tensor mean_, std_, scale_, shift_;
  EightBitNormalize eight_bit_;  // addcmul's arithmetic, on 8-bit and on float values
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
    // (clamp(x) - lo) * scale / (hi - lo), in place on clamp's output, in pooled memory: a 7-slice CT
    // stack is 7 MB (data/pooled_memory.h).
    const torch::Tensor values = x.to(torch::kFloat);
    for (const auto& [lo, hi] : windows_) {
      torch::Tensor window = pooled_empty(values.sizes(), torch::kFloat);
      views.push_back(torch::clamp_out(window, values, lo, hi).sub_(lo).mul_(scale_ / (hi - lo)));
    }
    // [C * W, H, W]: the windows of channel 0, then of channel 1, ...
    x = views.size() == 1 ? views[0] : torch::stack(views, 1).flatten(0, 1);
  }

  // One window maps each value alone (several make channels).
  const std::string* elementwise_field() const override { return windows_.size() == 1 ? &field_ : nullptr; }
  void check_elementwise(const Sample& s, const torch::Tensor& x) const override {
    require_chw(s, field_, x, "ct_window");
  }
  // apply()'s arithmetic: (clamp(x, lo, hi) - lo) * (scale / (hi - lo)), the scalars rounded to float
  // as ATen rounds them; NaN stays NaN, as in ATen's clamp.
  void map_values(float* values, int64_t n, int64_t) const override {
    const auto [lo, hi] = windows_[0];
    const float low = static_cast<float>(lo), high = static_cast<float>(hi), gain = static_cast<float>(scale_ / (hi - lo));
    for (int64_t i = 0; i < n; ++i) {
      const float v = values[i];
      values[i] = ((v < low ? low : (v > high ? high : v)) - low) * gain;
    }
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
  const std::string* elementwise_field() const override { return &field_; }
  void check_elementwise(const Sample& s, const torch::Tensor& x) const override {
    require_chw(s, field_, x, "scale");
  }
  void map_values(float* values, int64_t n, int64_t) const override {
    const auto factor = static_cast<float>(factor_);  // ATen's float arithmetic with a double scalar
    for (int64_t i = 0; i < n; ++i) values[i] *= factor;
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
