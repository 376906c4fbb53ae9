# One precompiled header for torch, built once and reused by every target that includes torch, so
# each translation unit pays for <torch/torch.h> once per build instead of once per file.
add_library(facet_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(facet_pch PUBLIC facet::torch yaml-cpp nlohmann_json::nlohmann_json)
target_precompile_headers(facet_pch PRIVATE <torch/torch.h> <fmt/format.h> <fmt/ranges.h>)

# facet_use_torch_pch(TARGET): reuse the precompiled torch header in TARGET.
function(facet_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM facet_pch)
endfunction()
