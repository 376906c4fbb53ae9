#include "models/model.h"

namespace facet::models {

ModelRegistry& model_registry() {
  static ModelRegistry registry("model", "models");
  return registry;
}

}  // namespace facet::models

namespace facet::models {

namespace {
bool is_dropout(const torch::nn::Module& m) {
  return dynamic_cast<const torch::nn::DropoutImpl*>(&m) || dynamic_cast<const torch::nn::Dropout2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::Dropout3dImpl*>(&m) || dynamic_cast<const torch::nn::AlphaDropoutImpl*>(&m) ||
         dynamic_cast<const torch::nn::FeatureAlphaDropoutImpl*>(&m);
}
}  // namespace

DropoutOnlyTraining::DropoutOnlyTraining(torch::nn::Module& model) {
  for (const auto& m : model.modules(/*include_self=*/false)) modes_.emplace_back(m, m->is_training());
  root_training_ = model.is_training();
  root_ = &model;
  model.eval();
  for (const auto& [m, was] : modes_)
    if (is_dropout(*m)) {
      m->train();
      ++dropout_modules_;
    }
}

DropoutOnlyTraining::~DropoutOnlyTraining() {
  root_->train(root_training_);
  for (const auto& [m, was] : modes_) m->train(was);
}

}  // namespace facet::models
