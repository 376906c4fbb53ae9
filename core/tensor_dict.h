// TensorDict: named tensors — a model's outputs, a batch's fields, a loss's parts. A thin ordered
// map whose lookups fail with the missing name and the names that exist.
#pragma once

#include "core/error.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace facet {

class TensorDict {
 public:
  using Map = std::map<std::string, torch::Tensor, std::less<>>;

  TensorDict() = default;
  TensorDict(std::initializer_list<Map::value_type> items) : items_(items) {}

  torch::Tensor& operator[](const std::string& name) { return items_[name]; }
  const torch::Tensor& at(std::string_view name) const {
    auto it = items_.find(name);
    if (it == items_.end()) fail("no tensor named \"{}\" (have: {})", name, fmt::join(keys(), ", "));
    return it->second;
  }
  bool contains(std::string_view name) const { return items_.find(name) != items_.end(); }
  void erase(std::string_view name) {
    if (auto it = items_.find(name); it != items_.end()) items_.erase(it);
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : items_) out.push_back(k);
    return out;
  }

  // Every tensor moved to `device` (non-blocking copies when the source is pinned).
  TensorDict to(const torch::Device& device, bool non_blocking = false) const {
    TensorDict out;
    for (const auto& [k, v] : items_) out.items_[k] = v.defined() ? v.to(device, non_blocking) : v;
    return out;
  }

  Map::iterator begin() { return items_.begin(); }
  Map::iterator end() { return items_.end(); }
  Map::const_iterator begin() const { return items_.begin(); }
  Map::const_iterator end() const { return items_.end(); }

 private:
  Map items_;
};

}  // namespace facet
