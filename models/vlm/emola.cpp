#include "models/vlm/emola.h"

#include "core/error.h"

namespace facet::models::vlm {

EmolaOptions EmolaOptions::from(const Config& c) {
  EmolaOptions o;
  o.llava = LlavaOptions::from(c);
  o.prior_dim = c.get_in_range<int64_t>("prior_dim", o.prior_dim, Range::at_least(1));
  return o;
}

EmolaModel::EmolaModel(const EmolaOptions& options) : LlavaModel(options.llava), prior_dim_(options.prior_dim) {
  const int64_t h = options.llava.text.hidden_size;
  landmark_projector = register_module("landmark_projector", MlpProjector(options.prior_dim, h, h));
}

torch::Tensor EmolaModel::prior_token(const torch::Tensor& landmarks) {
  if (landmarks.dim() != 2 || landmarks.size(1) != prior_dim_)
    fail("emola: landmarks must be [B, {}] (InsightFace 2d106det's 106 x 2 outputs), got {}", prior_dim_, landmarks.sizes());
  return landmark_projector(landmarks.to(landmark_projector->linear_1->weight.device())).unsqueeze(1);
}

torch::Tensor EmolaModel::visual_tokens(const data::Batch& batch) {
  if (!batch.fields.contains("landmarks")) fail("emola: the batch has no `landmarks` field (the 212-d facial prior)");
  const auto image = LlavaModel::visual_tokens(batch);
  const auto prior = prior_token(batch.fields.at("landmarks"));
  if (prior.size(0) != image.size(0)) fail("emola: {} images but {} landmark vectors", image.size(0), prior.size(0));
  return torch::cat({image, prior.to(image.scalar_type())}, 1);
}

namespace {
FACET_REGISTER(model_registry(), "emola",
               "EmoLA: LLaVA-1.5 + the facial prior expert (212-d landmark vector -> 4096 -> 4096, one token after the image "
               "tokens); llava keys + prior_dim; batch field `landmarks`",
               [](const Config& c) -> std::shared_ptr<Model> {
                 auto m = std::make_shared<EmolaModel>(c);
                 m->configure_generation(c);
                 return m;
               });
}  // namespace

}  // namespace facet::models::vlm
