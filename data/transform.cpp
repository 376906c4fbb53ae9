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

}  // namespace facet::data
