#include "models/backbones/backbone.h"

namespace facet::models {

BackboneRegistry& backbone_registry() {
  static BackboneRegistry registry("backbone", "backbones");
  return registry;
}

}  // namespace facet::models
