#include "data/dataset.h"

#include "data/batch_slots.h"
#include "data/pooled_memory.h"

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

bool is_per_box(std::string_view name) { return name.starts_with("box_"); }

void check_per_box_fields(const Sample& s, std::string_view where) {
  const torch::Tensor* boxes = s.ragged.contains("boxes") ? &s.ragged.at("boxes") : nullptr;
  if (boxes && boxes->dim() == 0) fail("{}: {}: \"boxes\" is a scalar; expected [N, 4]", s.id, where);
  for (const auto& [name, t] : s.ragged) {
    if (!is_per_box(name)) continue;
    if (!boxes) fail("{}: {}: per-box field \"{}\" but no \"boxes\"", s.id, where, name);
    if (t.dim() == 0 || t.size(0) != boxes->size(0))
      fail("{}: {}: per-box field \"{}\" has shape {} for {} boxes; its first dimension must be the number of boxes",
           s.id, where, name, c10::str(t.sizes()), boxes->size(0));
  }
}

namespace {

// Fails unless every sample has the same keys in `member` (fields or ragged) as the first one.
void check_same_keys(const std::vector<Sample>& samples, TensorDict Sample::*member, std::string_view what) {
  const Sample& first = samples.front();
  const auto expected = (first.*member).keys();
  for (const auto& s : samples) {
    if ((s.*member).keys() == expected) continue;
    for (const auto& k : expected)
      if (!(s.*member).contains(k)) fail("{}: sample has no {} \"{}\" that {} has", s.id, what, k, first.id);
    for (const auto& k : (s.*member).keys())
      if (!(first.*member).contains(k)) fail("{}: sample has no {} \"{}\" that {} has", first.id, what, k, s.id);
  }
}

// Field `name` of every sample, padded along the first dimension to the longest; `mask` (when
// defined on return) marks the samples' own positions.
torch::Tensor pad_field(const std::vector<Sample>& samples, const std::string& name, const Padding& p,
                        torch::Tensor& mask) {
  const torch::Tensor& ref = samples.front().fields.at(name);
  const std::string& ref_id = samples.front().id;
  if (ref.dim() == 0) fail("{}: field \"{}\" is padded along its first dimension but is a scalar", ref_id, name);
  int64_t longest = 0;
  for (const auto& s : samples) {
    const torch::Tensor& t = s.fields.at(name);
    if (t.dim() != ref.dim() || t.sizes().slice(1) != ref.sizes().slice(1))
      fail("{}: field \"{}\" has shape {} but {} has {}; a padded field may differ only in its first dimension", s.id,
           name, c10::str(t.sizes()), ref_id, c10::str(ref.sizes()));
    if (t.scalar_type() != ref.scalar_type())
      fail("{}: field \"{}\" is {} but {} has {}", s.id, name, c10::toString(t.scalar_type()), ref_id,
           c10::toString(ref.scalar_type()));
    longest = std::max(longest, t.size(0));
  }
  std::vector<int64_t> shape = ref.sizes().vec();
  shape[0] = longest;
  shape.insert(shape.begin(), static_cast<int64_t>(samples.size()));
  torch::Tensor out = torch::full(shape, p.value, ref.options());
  mask = torch::zeros({static_cast<int64_t>(samples.size()), longest}, torch::kInt64);
  for (size_t i = 0; i < samples.size(); ++i) {
    const torch::Tensor& t = samples[i].fields.at(name);
    const int64_t n = t.size(0), offset = p.left ? longest - n : 0;
    const auto row = static_cast<int64_t>(i);
    out[row].narrow(0, offset, n).copy_(t);
    mask[row].narrow(0, offset, n).fill_(1);
  }
  return out;
}

// torch::stack, into memory kept between batches (data/pooled_memory.h) when the parts are CPU tensors
// of one dtype (else torch::stack promotes them).
torch::Tensor stack(const std::vector<torch::Tensor>& parts) {
  const torch::Tensor& first = parts.front();
  for (const auto& p : parts)
    if (!p.is_cpu() || p.scalar_type() != first.scalar_type()) return torch::stack(parts);
  std::vector<int64_t> shape{static_cast<int64_t>(parts.size())};
  shape.insert(shape.end(), first.sizes().begin(), first.sizes().end());
  torch::Tensor out = pooled_empty(shape, first.scalar_type());
  return torch::stack_out(out, parts);
}

}  // namespace

Batch collate(std::vector<Sample> samples, std::vector<int64_t> indices, const PaddingSpec& padding,
              const BatchSlots* slots) {
  Batch batch;
  if (samples.empty()) fail("collate: empty batch");
  if (indices.size() != samples.size()) fail("collate: {} samples but {} indices", samples.size(), indices.size());
  check_same_keys(samples, &Sample::fields, "field");
  check_same_keys(samples, &Sample::ragged, "ragged key");
  for (const auto& s : samples) check_per_box_fields(s, "collate");
  const Sample& first = samples.front();
  for (const auto& name : first.fields.keys()) {
    if (auto it = padding.find(name); it != padding.end()) {
      const Padding& p = it->second;
      torch::Tensor mask;
      batch.fields[name] = pad_field(samples, name, p, mask);
      if (p.mask.empty()) continue;
      // A mask that would overwrite a field, or disagree with another field's mask, is a dataset bug.
      if (first.fields.contains(p.mask))
        fail("{}: the padding mask of field \"{}\" is named \"{}\", which is a field of the sample", first.id, name, p.mask);
      if (batch.fields.contains(p.mask) && !torch::equal(batch.fields.at(p.mask), mask))
        fail("{}: fields padded with the same mask \"{}\" differ in length", first.id, p.mask);
      batch.fields[p.mask] = mask;
      continue;
    }
    std::vector<torch::Tensor> parts;
    parts.reserve(samples.size());
    for (auto& s : samples) {
      const auto& t = s.fields.at(name);
      if (!parts.empty() && t.sizes() != parts.front().sizes())
        fail("{}: field \"{}\" has shape {} but {} has {}; make it ragged, pad it (Dataset::padding) or resize it",
             s.id, name, c10::str(t.sizes()), first.id, c10::str(parts.front().sizes()));
      parts.push_back(t);
    }
    if (slots != nullptr)
      if (torch::Tensor stacked = slots->stacked(name, parts); stacked.defined()) {
        batch.fields[name] = std::move(stacked);
        continue;
      }
    batch.fields[name] = stack(parts);
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
