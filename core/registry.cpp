#include "core/registry.h"

namespace facet {

RegistryIndex& RegistryIndex::instance() {
  static RegistryIndex index;
  return index;
}

void RegistryIndex::add_kind(std::string kind, Lister lister) {
  if (kinds_.count(kind)) fail("registry kind \"{}\" is defined twice", kind);
  kinds_.emplace(std::move(kind), std::move(lister));
}

std::vector<std::pair<std::string, std::vector<ComponentInfo>>> RegistryIndex::all() const {
  std::vector<std::pair<std::string, std::vector<ComponentInfo>>> out;
  for (const auto& [kind, lister] : kinds_) out.emplace_back(kind, lister());
  return out;
}

}  // namespace facet
