#include "models/generative/detex.h"

#include "core/error.h"

namespace facet::models::generative {

namespace F = torch::nn::functional;

vlm::ClipVisionOptions DetexOptions::vit_l14() {
  vlm::ClipVisionOptions o = vlm::ClipVisionOptions::vit_l14_336();
  o.image_size = 224;  // openai/clip-vit-large-patch14, as ELITE encodes its images
  o.feature_layer = -1;
  o.keep_cls = true;
  return o;
}

DetexOptions DetexOptions::from(const Config& c) {
  DetexOptions o;
  o.diffusion = StableDiffusionOptions::from(c);
  o.image_encoder = c.has("image_encoder") ? vlm::ClipVisionOptions::from(c.at("image_encoder"), vit_l14()) : vit_l14();
  o.image_encoder.keep_cls = true;  // the global branch reads the CLS token
  if (c.has("attributes")) {
    o.attributes.clear();
    const Config list = c.at("attributes");
    for (size_t i = 0; i < list.size(); ++i)
      o.attributes.push_back({list.at(i).get<std::string>("token"), list.at(i).get<std::string>("name")});
  }
  if (o.attributes.empty()) fail("{}: {}: DETEX needs at least one attribute (background, pose)", c.where("attributes"), c.full_key("attributes"));
  for (size_t i = 0; i < o.attributes.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (o.attributes[i].token == o.attributes[j].token || o.attributes[i].name == o.attributes[j].name)
        fail("{}: {}: attributes {} and {} share a token or a name", c.where("attributes"), c.full_key("attributes"), j, i);
  if (o.diffusion.new_tokens.empty())
    fail("{}: {}: DETEX learns one subject word: give model.new_tokens (e.g. [\"<new1>\"]) and its initializer_tokens",
         c.where("new_tokens"), c.full_key("new_tokens"));
  o.mapper_hidden = c.get_in_range<int64_t>("mapper_hidden", o.mapper_hidden, Range::at_least(1));
  o.mapper_l1 = c.get_in_range<double>("mapper_l1", o.mapper_l1, Range::at_least(0));
  return o;
}

namespace {

torch::nn::Sequential mapper_mlp(int64_t in, int64_t hidden, int64_t out) {
  auto ln = [](int64_t d) {
    torch::nn::LayerNorm m(torch::nn::LayerNormOptions({d}));
    to_scope(*m);
    return m;
  };
  // ELITE's nn.Sequential(Linear, LayerNorm, LeakyReLU, Linear, LayerNorm, LeakyReLU, Linear): indices 0 1 3 4 6.
  return torch::nn::Sequential(Linear(in, hidden), ln(hidden), torch::nn::LeakyReLU(), Linear(hidden, hidden), ln(hidden),
                               torch::nn::LeakyReLU(), Linear(hidden, out));
}

}  // namespace

AttributeMapperImpl::AttributeMapperImpl(int64_t in, int64_t hidden, int64_t out) {
  global_mlp = register_module("global_mlp", mapper_mlp(in, hidden, out));
  patch_mlp = register_module("patch_mlp", mapper_mlp(in, hidden, out));
}

torch::Tensor AttributeMapperImpl::forward(const torch::Tensor& tokens) {
  return global_mlp->forward(tokens.select(1, 0)) + patch_mlp->forward(tokens.slice(1, 1)).mean(1);
}

Detex::Detex(DetexOptions options) : StableDiffusion(options.diffusion), detex_(std::move(options)) {
  for (const auto& a : detex_.attributes) placeholder_tokens_.push_back(a.token);
  image_encoder = register_module("image_encoder", vlm::ClipVision(detex_.image_encoder));
  for (auto& p : image_encoder->parameters()) p.set_requires_grad(false);  // frozen, as ELITE's
  // The mappers start from scratch, never from a file: initialised even when the rest is built for
  // a checkpoint (train.defer_init), in the scope's dtype and device.
  const ConstructionOptions scope = ConstructionScope::current();
  ConstructionScope initialised(scope.dtype, /*defer_init=*/false, scope.device);
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> by_name;
  for (const auto& a : detex_.attributes)
    by_name.emplace_back(a.name, AttributeMapper(detex_.image_encoder.hidden_size, detex_.mapper_hidden, options_.text_encoder.hidden_size).ptr());
  mappers = register_module("mappers", torch::nn::ModuleDict(by_name));
}

torch::Tensor Detex::attribute_words(const torch::Tensor& images) {
  const auto& o = detex_.image_encoder;
  torch::Tensor tokens;
  {
    torch::NoGradGuard no_grad;  // the tower is frozen; only the mappers learn
    // [-1, 1] -> [0, 1] -> the tower's size -> CLIP's normalisation.
    torch::Tensor x = (images.to(torch::kFloat) + 1) / 2;
    x = F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{o.image_size, o.image_size}).mode(torch::kBilinear).align_corners(false));
    const auto stats = [&](const std::vector<double>& v) { return torch::tensor(v, x.options()).view({1, 3, 1, 1}); };
    x = (x - stats(detex_.image_mean)) / stats(detex_.image_std);
    tokens = image_encoder->features(x.to(image_encoder->vision_model->embeddings->class_embedding.dtype()));
  }
  std::vector<torch::Tensor> words;
  for (const auto& a : detex_.attributes) words.push_back(mappers[a.name]->as<AttributeMapper>()->forward(tokens));
  return torch::stack(words, 1);  // [B, A, D]
}

torch::Tensor Detex::word_embeddings(const torch::Tensor& ids, const data::Batch* batch, TensorDict* regularizers) {
  torch::Tensor words = StableDiffusion::word_embeddings(ids, batch, regularizers);
  std::vector<torch::Tensor> at;
  for (const auto& a : detex_.attributes) at.push_back(ids == tokenizer().token_to_id(a.token));
  if (!torch::stack(at).any().item<bool>()) return words;  // inference with the subject word alone
  const torch::Tensor* images = batch && batch->fields.contains(options_.image_field) ? &batch->fields.at(options_.image_field) : nullptr;
  if (!images)
    fail("detex: a prompt uses an attribute word ({}) but there is no image to map it from (batch field \"{}\")",
         detex_.attributes[0].token, options_.image_field);
  const torch::Tensor mapped = attribute_words(images->to(words.device()));  // [B, A, D]
  for (size_t a = 0; a < at.size(); ++a)
    words = torch::where(at[a].unsqueeze(-1), mapped.select(1, static_cast<int64_t>(a)).unsqueeze(1).to(words.dtype()), words);
  if (regularizers && detex_.mapper_l1 > 0) (*regularizers)["mapper_l1"] = detex_.mapper_l1 * mapped.abs().mean();
  return words;
}

FACET_REGISTER(model_registry(), "detex",
               "DETEX: Stable Diffusion with a learned subject word and image-specific attribute words (background, pose) "
               "mapped from a frozen CLIP ViT-L/14 (ELITE-style mappers), masked loss; stable_diffusion keys + attributes, "
               "image_encoder, mapper_hidden, mapper_l1",
               [](const Config& c) -> std::shared_ptr<Model> { return std::make_shared<Detex>(c); });

}  // namespace facet::models::generative
