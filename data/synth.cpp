#include "data/synth.h"

namespace facet::data {

SynthRegistry& synth_registry() {
  static SynthRegistry registry("synthetic dataset writer", "synthetic dataset writers");
  return registry;
}

}  // namespace facet::data
