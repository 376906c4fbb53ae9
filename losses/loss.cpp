#include "losses/loss.h"

namespace facet::losses {

LossRegistry& loss_registry() {
  static LossRegistry registry("loss", "losses");
  return registry;
}

}  // namespace facet::losses
