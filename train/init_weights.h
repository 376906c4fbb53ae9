// train.init_weights: a new run's model starts from other weights — an ImageNet backbone, an MAE
// checkpoint, the BP4D model a DISFA run starts from (JAA-Net's practice, face.md §B.3). The loader,
// its entry keys and the converters live in models/weights/init_weights.h (model tests use them too);
// the trainer calls them through these names. Only new runs read the list (a resumed run restores its
// own checkpoint; reapply_weights re-loads recorded frozen weights).
#pragma once

#include "models/weights/init_weights.h"

namespace facet::train {

using models::init_weights;
using models::InitWeightsOptions;
using models::LoadedWeights;
using models::reapply_weights;

}  // namespace facet::train
