// Building a model from its config node — the entry point the trainer's builder calls:
//
//   auto model = models::build_model(config.at("model"), {.dtype = torch::kBFloat16, .defer_init = true});
//   auto records = models::init_weights(*model, config.at("train.init_weights"));   // weights/init_weights.h
//
// = registry create under a ConstructionScope (layers/construction.h: the target dtype and device,
// no random initialisation when deferring), every floating tensor cast to the dtype and moved to the
// device, then the post-build adapters of `model.adapters` (adapters/adapter.h). With defer_init the
// model is garbage until init_weights has covered every tensor (it checks).
#pragma once

#include "core/config.h"
#include "models/model.h"

#include <torch/torch.h>

#include <memory>

namespace facet::models {

struct ModelBuildOptions {
  torch::Dtype dtype = torch::kFloat32;
  bool defer_init = false;
  torch::Device device = torch::kCPU;
};

std::shared_ptr<Model> build_model(const Config& model_node, const ModelBuildOptions& options = {});

// "float32" | "bfloat16" | "float16" (also fp32, bf16, fp16) -> the dtype; an error naming `where` otherwise.
torch::Dtype parse_dtype(const std::string& name, std::string_view where = "dtype");

}  // namespace facet::models
