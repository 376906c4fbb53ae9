#include "data/dataset.h"

namespace facet::data {

DatasetRegistry& dataset_registry() {
  static DatasetRegistry registry("dataset", "datasets");
  return registry;
}

Batch Batch::to(const torch::Device& device, bool non_blocking) const {
  Batch out;
  out.fields = fields.to(device, non_blocking);
  for (const auto& [name, list] : ragged) {
    auto& moved = out.ragged[name];
    for (const auto& t : list) moved.push_back(t.to(device, non_blocking));
  }
  out.text = text;
  out.ids = ids;
  out.indices = indices;
  return out;
}

MaskField::MaskField(const Config& c, const std::string& key, const std::string& fallback)
    : name_(c.get<std::string>(key, fallback)),
      origin_(c.has(key) ? fmt::format("{}: {}", c.where(key), c.full_key(key)) : "") {}

torch::Tensor MaskField::of(const Batch& batch, const torch::Tensor& like) const {
  if (!batch.fields.contains(name_)) {
    if (!origin_.empty()) fail("{}: the batch has no field \"{}\"", origin_, name_);
    return torch::ones_like(like);
  }
  const torch::Tensor& mask = batch.fields.at(name_);
  if (mask.numel() != like.numel())
    fail("{}: mask \"{}\" is {}, the values it masks are {}", origin_.empty() ? "mask" : origin_, name_, mask.sizes(), like.sizes());
  return mask.to(like.options()).view_as(like);
}

Batch collate(std::vector<Sample> samples, std::vector<int64_t> indices) {
  Batch batch;
  if (samples.empty()) fail("collate: empty batch");
  for (const auto& name : samples.front().fields.keys()) {
    std::vector<torch::Tensor> parts;
    parts.reserve(samples.size());
    for (auto& s : samples) {
      if (!s.fields.contains(name)) fail("{}: sample has no field \"{}\" that {} has", s.id, name, samples[0].id);
      const auto& t = s.fields.at(name);
      if (!parts.empty() && t.sizes() != parts.front().sizes())
        fail("{}: field \"{}\" has shape {} but {} has {}; make it ragged or resize it", s.id, name,
             c10::str(t.sizes()), samples[0].id, c10::str(parts.front().sizes()));
      parts.push_back(t);
    }
    batch.fields[name] = torch::stack(parts);
  }
  for (auto& s : samples) {
    for (const auto& [name, t] : s.ragged) batch.ragged[name].push_back(t);
    for (auto& [name, t] : s.text) batch.text[name].push_back(std::move(t));
    batch.ids.push_back(std::move(s.id));
  }
  batch.indices = torch::tensor(indices, torch::kInt64);
  return batch;
}

}  // namespace facet::data
