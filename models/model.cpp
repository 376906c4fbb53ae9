#include "models/model.h"

namespace facet::models {

ModelRegistry& model_registry() {
  static ModelRegistry registry("model", "models");
  return registry;
}

}  // namespace facet::models
