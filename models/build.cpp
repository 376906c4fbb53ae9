#include "models/build.h"

#include "models/adapters/adapter.h"
#include "models/layers/construction.h"

namespace facet::models {

std::shared_ptr<Model> build_model(const Config& node, const ModelBuildOptions& options) {
  std::shared_ptr<Model> model;
  {
    ConstructionScope scope(ConstructionOptions{options.dtype, options.device, options.defer_init});
    model = model_registry().create(node);
  }
  // LibTorch's own layers ignored the scope: they are float32 on the CPU, and initialised.
  cast_floating(*model, options.dtype);
  if (options.device != torch::Device(torch::kCPU)) to_device(*model, options.device);
  if (node.has("adapters")) apply_adapters(*model, node.at("adapters"));
  return model;
}

torch::Dtype parse_dtype(const std::string& name, std::string_view where) {
  if (name == "float32" || name == "fp32" || name == "float") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return torch::kFloat16;
  fail("{}: expected float32, bfloat16 or float16, got \"{}\"", where, name);
}

}  // namespace facet::models
