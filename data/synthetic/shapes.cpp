// "synthetic_shapes": a procedurally drawn classification set (circle, square, triangle, cross on a
// noisy background) that needs no files. It exists so the trainer, the loader and `make demo` can
// be exercised end to end on any machine; the dataset readers of the papers live beside it in data/.
#include "data/dataset.h"
#include "data/sampler.h"

namespace facet::data {
namespace {

class SyntheticShapes : public Dataset {
 public:
  SyntheticShapes(const Config& c, const std::string& split)
      : size_(c.get<int64_t>(split == "train" ? "train_size" : "eval_size", split == "train" ? 2000 : 500)),
        image_size_(c.get<int64_t>("image_size", 32)),
        noise_(c.get<double>("noise", 0.25)),
        flip_(c.get<bool>("augment_flip", true) && split == "train"),
        seed_(mix_seed(static_cast<uint64_t>(c.get<int64_t>("seed", 0)), split == "train" ? 1 : 2)) {
    if (size_ <= 0) fail("{}: {}: expected a positive number of samples", c.where(), c.prefix());
    if (image_size_ < 8) fail("{}: {}.image_size: expected >= 8, got {}", c.where("image_size"), c.prefix(), image_size_);
  }

  int64_t size() const override { return size_; }
  std::vector<std::string> label_names() const override { return {"circle", "square", "triangle", "cross"}; }

  Sample get(int64_t index, uint64_t augment_seed) const override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, static_cast<uint64_t>(index)));
    const int64_t label = index % 4;
    const auto params = torch::rand({4}, gen);  // centre x, centre y, radius, rotation-free jitter
    const double n = static_cast<double>(image_size_);
    const double cx = n * (0.3 + 0.4 * params[0].item<double>()), cy = n * (0.3 + 0.4 * params[1].item<double>());
    const double r = n * (0.15 + 0.1 * params[2].item<double>());
    const auto axis = torch::arange(image_size_, torch::kFloat);
    const auto y = axis.view({-1, 1}).expand({image_size_, image_size_}) - cy;
    const auto x = axis.view({1, -1}).expand({image_size_, image_size_}) - cx;
    torch::Tensor mask;
    switch (label) {
      case 0: mask = (x * x + y * y) <= r * r; break;                                     // circle
      case 1: mask = (x.abs() <= r * 0.85) & (y.abs() <= r * 0.85); break;                // square
      case 2: mask = (y <= r * 0.8) & (y >= -r) & (x.abs() <= (y + r) * 0.6); break;      // triangle
      default: mask = ((x.abs() <= r * 0.3) | (y.abs() <= r * 0.3)) & (x.abs() <= r) & (y.abs() <= r); break;  // cross
    }
    torch::Tensor image = mask.to(torch::kFloat) + noise_ * torch::randn({image_size_, image_size_}, gen);
    if (flip_) {
      auto aug = at::make_generator<at::CPUGeneratorImpl>(augment_seed);
      if (torch::rand({1}, aug).item<double>() < 0.5) image = image.flip({1});
    }
    Sample s;
    s.fields["image"] = image.unsqueeze(0);
    s.fields["label"] = torch::tensor(label, torch::kInt64);
    s.id = fmt::format("synthetic_shapes/{}", index);
    return s;
  }

 private:
  int64_t size_, image_size_;
  double noise_;
  bool flip_;
  uint64_t seed_;
};

FACET_REGISTER(dataset_registry(), "synthetic_shapes",
               "Procedural 4-class shapes (no files); for smoke tests and the demo",
               [](const Config& c, const std::string& split) { return std::make_shared<SyntheticShapes>(c, split); });

}  // namespace
}  // namespace facet::data
