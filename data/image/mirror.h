// Mirroring 8-bit interleaved pixels left-right into new memory: the flip of a decoded frame's view on
// the loader's 8-bit path (data/transform.h), where ATen's flip of a channels-last uint8 view costs
// several times this copy plus its dispatch.
#pragma once

#include "data/image/resample.h"  // PixelsView

namespace facet::data::image {

// Each row of `in` with its pixels in reverse order into `out`: contiguous, in.rows rows of
// in.cols * in.channels bytes.
void mirror_rows(const PixelsView& in, uint8_t* out);

}  // namespace facet::data::image
