#include "data/transform.h"

namespace facet::data {

TransformRegistry& transform_registry() {
  static TransformRegistry registry("transform", "transforms");
  return registry;
}

std::vector<std::shared_ptr<Transform>> build_transforms(const Config& list) {
  if (!list.is_list()) fail("{}: {}: expected a list of transforms", list.where(), list.prefix());
  std::vector<std::shared_ptr<Transform>> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(transform_registry().create(list.at(i)));
  return out;
}

namespace {

// (x - mean) / std per channel (dim 0 of the field).
class Normalize : public Transform {
 public:
  explicit Normalize(const Config& c)
      : field_(c.get<std::string>("field", "image")),
        mean_(torch::tensor(c.get<std::vector<double>>("mean"), torch::kFloat)),
        std_(torch::tensor(c.get<std::vector<double>>("std"), torch::kFloat)) {
    if (mean_.numel() != std_.numel())
      fail("{}: {}: mean and std must have the same length", c.where("std"), c.prefix());
    if ((std_ <= 0).any().item<bool>()) fail("{}: {}.std: every value must be positive", c.where("std"), c.prefix());
  }
  void apply(Sample& s, at::Generator&) const override {
    auto& x = s.fields[field_];
    if (x.size(0) != mean_.numel())
      fail("{}: normalize: field \"{}\" has {} channels, mean/std have {}", s.id, field_, x.size(0), mean_.numel());
    const std::vector<int64_t> shape = [&] {
      std::vector<int64_t> v(static_cast<size_t>(x.dim()), 1);
      v[0] = -1;
      return v;
    }();
    x = (x.to(torch::kFloat) - mean_.view(shape)) / std_.view(shape);
  }

 private:
  std::string field_;
  torch::Tensor mean_, std_;
};

// Mirrors the listed [C, H, W] fields along W with probability p.
class RandomHFlip : public Transform {
 public:
  explicit RandomHFlip(const Config& c)
      : p_(c.get<double>("p", 0.5)), fields_(c.get<std::vector<std::string>>("fields", {"image"})) {
    if (p_ < 0 || p_ > 1) fail("{}: {}.p: expected a probability, got {}", c.where("p"), c.prefix(), p_);
  }
  void apply(Sample& s, at::Generator& generator) const override {
    if (torch::rand({1}, generator).item<double>() >= p_) return;
    for (const auto& f : fields_) s.fields[f] = s.fields.at(f).flip({-1});
  }

 private:
  double p_;
  std::vector<std::string> fields_;
};

FACET_REGISTER(transform_registry(), "normalize", "(x - mean) / std per channel of one field",
               [](const Config& c) { return std::make_shared<Normalize>(c); });
FACET_REGISTER(transform_registry(), "random_hflip", "Horizontal flip of [C, H, W] fields with probability p",
               [](const Config& c) { return std::make_shared<RandomHFlip>(c); });

}  // namespace
}  // namespace facet::data
