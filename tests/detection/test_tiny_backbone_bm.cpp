// Registers the detector tests' tiny stride-4 backbone (tests/detection/tiny_backbone.h) in this executable.
#include "tests/detection/tiny_backbone.h"

namespace facet::models::detection {
namespace {

FACET_REGISTER(backbone_registry(), "test_tiny_stride4", "Test: three convs to one stride-4 map (in_channels, channels)",
               [](const Config& c) {
                 return std::make_shared<TinyBackbone>(c.get<int64_t>("in_channels", 1), c.get<int64_t>("channels", 32));
               });

}  // namespace
}  // namespace facet::models::detection
