#include "data/batch_slots.h"

#include "data/pooled_memory.h"

namespace facet::data {
namespace {

thread_local BatchSlots::Row* current_row = nullptr;

// Whether `part` is exactly row `row` of `batch`: same memory, shape, strides and type.
bool is_row(const torch::Tensor& part, const torch::Tensor& batch, int64_t row) {
  if (!part.defined() || part.scalar_type() != batch.scalar_type() || part.dim() != batch.dim() - 1) return false;
  if (!part.has_storage() || !part.storage().is_alias_of(batch.storage())) return false;
  if (part.sizes() != batch.sizes().slice(1) || part.strides() != batch.strides().slice(1)) return false;
  const auto* start = static_cast<const char*>(batch.data_ptr()) + row * batch.stride(0) * batch.element_size();
  return part.data_ptr() == start;
}

}  // namespace

BatchSlots::Row::Row(BatchSlots& slots, int64_t row) : slots_(slots), row_(row), previous_(current_row) {
  current_row = this;
}

BatchSlots::Row::~Row() { current_row = previous_; }

torch::Tensor BatchSlots::output(const std::string& name, at::IntArrayRef sizes, at::ScalarType dtype) {
  Row* row = current_row;
  if (row == nullptr || row->row_ >= row->slots_.rows_ || row->given_.contains(name))
    return torch::empty(sizes, torch::dtype(dtype));
  BatchSlots& slots = row->slots_;
  auto it = slots.tensors_.find(name);
  if (it == slots.tensors_.end()) {
    std::vector<int64_t> shape{slots.rows_};
    shape.insert(shape.end(), sizes.begin(), sizes.end());
    // Pinned memory comes from CUDA's caching host allocator; pageable memory from ours.
    torch::Tensor batch = slots.pinned_ ? torch::empty(shape, torch::dtype(dtype).pinned_memory(true))
                                        : pooled_empty(shape, dtype);
    it = slots.tensors_.emplace(name, std::move(batch)).first;
  }
  const torch::Tensor& batch = it->second;
  if (batch.scalar_type() != dtype || batch.sizes().slice(1) != sizes) return torch::empty(sizes, torch::dtype(dtype));
  row->given_.insert(name);
  return batch[row->row_];
}

bool BatchSlots::holds(const std::string& name, const torch::Tensor& t) {
  const Row* row = current_row;
  if (row == nullptr || !row->given_.contains(name)) return false;
  const auto it = row->slots_.tensors_.find(name);
  return it != row->slots_.tensors_.end() && is_row(t, it->second, row->row_);
}

torch::Tensor BatchSlots::stacked(const std::string& name, const std::vector<torch::Tensor>& parts) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end() || parts.empty() || static_cast<int64_t>(parts.size()) > rows_) return {};
  for (size_t i = 0; i < parts.size(); ++i)
    if (!is_row(parts[i], it->second, static_cast<int64_t>(i))) return {};
  return static_cast<int64_t>(parts.size()) == rows_ ? it->second : it->second.narrow(0, 0, static_cast<int64_t>(parts.size()));
}

}  // namespace facet::data
