#include "models/vlm/litegpt.h"

#include "core/error.h"
#include "models/weights/converter.h"

namespace facet::models::vlm {

LiteGptOptions LiteGptOptions::paper() {
  LiteGptOptions o;
  o.text.max_position_embeddings = 4096;
  o.text.rms_norm_eps = 1e-5;
  return o;
}

LiteGptOptions LiteGptOptions::from(const Config& c) {
  LiteGptOptions o = paper();
  if (c.has("biomedclip")) {
    const Config b = c.at("biomedclip");
    o.biomedclip.image_size = b.get<int64_t>("image_size", o.biomedclip.image_size);
    o.biomedclip.patch_size = b.get<int64_t>("patch_size", o.biomedclip.patch_size);
    o.biomedclip.embed_dim = b.get<int64_t>("embed_dim", o.biomedclip.embed_dim);
    o.biomedclip.depth = b.get<int64_t>("depth", o.biomedclip.depth);
    o.biomedclip.num_heads = b.get<int64_t>("num_heads", o.biomedclip.num_heads);
  }
  if (c.has("pubmedclip")) o.pubmedclip = ClipVisionOptions::from(c.at("pubmedclip"), o.pubmedclip);
  o.fold = c.get_in_range<int64_t>("fold", o.fold, Range::at_least(1));
  o.projector_hidden = c.get_in_range<int64_t>("projector_hidden", o.projector_hidden, Range::at_least(0));
  if (c.has("text")) o.text = llm::LlamaConfig::from(c.at("text"));
  o.image_token_id = c.get<int64_t>("image_token_id", o.image_token_id);
  o.loss_chunk_tokens = c.get_in_range<int64_t>("loss_chunk_tokens", o.loss_chunk_tokens, Range::at_least(1));
  o.gradient_checkpointing = c.get<bool>("gradient_checkpointing", o.gradient_checkpointing);
  o.validate(c.where() + ": " + (c.prefix().empty() ? std::string("litegpt") : c.prefix()));
  return o;
}

int64_t LiteGptOptions::visual_tokens() const {
  return (biomedclip.num_patches() + pubmedclip.grid() * pubmedclip.grid()) / fold;
}

void LiteGptOptions::validate(const std::string& where) const {
  pubmedclip.validate(where + ": pubmedclip");
  text.validate();
  if (pubmedclip.keep_cls) fail("{}: LiteGPT drops both towers' CLS tokens (pubmedclip.keep_cls must be false)", where);
  if (biomedclip.embed_dim != pubmedclip.hidden_size)
    fail("{}: the towers' widths differ (biomedclip {}, pubmedclip {}); concatenating their tokens needs one width", where,
         biomedclip.embed_dim, pubmedclip.hidden_size);
  if (biomedclip.image_size != pubmedclip.image_size)
    fail("{}: the towers read one image: biomedclip image_size {} != pubmedclip {}", where, biomedclip.image_size, pubmedclip.image_size);
  const int64_t tokens = biomedclip.num_patches() + pubmedclip.grid() * pubmedclip.grid();
  if (tokens % fold != 0) fail("{}: {} tower tokens do not fold by {}", where, tokens, fold);
}

LiteGptModel::LiteGptModel(const LiteGptOptions& options) : options_(options) {
  options_.validate();
  image_token_id_ = options.image_token_id;
  loss_chunk_tokens_ = options.loss_chunk_tokens;
  biomedclip = register_module("biomedclip", ViT(options.biomedclip));
  pubmedclip = register_module("pubmedclip", ClipVision(options.pubmedclip));
  projector = register_module("projector", MlpProjector(options.fused_dim(), options.projector_hidden, options.text.hidden_size));
  set_language_model(options.text);
  language_model_->model->gradient_checkpointing = options.gradient_checkpointing;
  freeze(*biomedclip);
  freeze(*pubmedclip);
}

torch::Tensor LiteGptModel::fused_tokens(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;  // both towers and the normalisation are frozen
  const auto x = images.to(biomedclip->patch_proj->weight.device());
  const auto biomed = biomedclip->forward_tokens(x.to(biomedclip->patch_proj->weight.dtype())).tokens.slice(1, 1);
  const auto pubmed = pubmedclip->features(x);
  auto tokens = torch::cat({biomed, pubmed.to(biomed.scalar_type())}, 1);  // [B, 245, 768]
  const int64_t d = tokens.size(2);
  tokens = torch::layer_norm(tokens.to(torch::kFloat32), {d}, {}, {}, 1e-5);
  const int64_t b = tokens.size(0), n = tokens.size(1);
  return tokens.reshape({b, n / options_.fold, d * options_.fold});  // row-major: token i -> group i / fold
}

torch::Tensor LiteGptModel::visual_tokens(const data::Batch& batch) {
  if (!batch.fields.contains("image")) fail("litegpt: the batch has no `image` field");
  return projector(fused_tokens(batch.fields.at("image")));
}

namespace {

ConversionPlan minigpt_v2_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "projector.linear_1.weight", "LiteGPT projector");
  static const std::string lora_prefix = "llama_model.base_model.model.";
  ConversionPlan plan;
  for (const auto& t : file) {
    const std::string& n = t.name;
    if (n == "llama_proj.weight" || n == "llama_proj.bias") {
      plan.copy(n, at + "projector.linear_2." + n.substr(11));
    } else if (n.starts_with(lora_prefix) && n.find(".lora_") != std::string::npos) {
      std::string rest = n.substr(lora_prefix.size());
      if (const auto p = rest.find(".default."); p != std::string::npos) rest.erase(p, 8);  // PEFT's adapter name
      plan.copy(n, at + "language_model." + rest);
    } else {
      plan.drop(n, "not part of LiteGPT's initialisation from MiniGPT-v2 (only llama_proj and the LLM's LoRA are)");
    }
  }
  std::vector<std::string> covers;
  for (const auto& r : plan.tensors) covers.push_back(r.target);
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "minigpt_v2",
               "MiniGPT-v2 stage-3 checkpoint -> LiteGPT: llama_proj -> projector.linear_2, the LLM's LoRA "
               "(llama_model.base_model.model.*.lora_A.default.weight) -> language_model.*.lora_A.weight; the rest left out",
               make_converter(minigpt_v2_plan));

FACET_REGISTER(model_registry(), "litegpt",
               "LiteGPT: BiomedCLIP ViT-B/16 + PubMedCLIP ViT-B/32 patch tokens concatenated, parameter-free LayerNorm, "
               "row-major fold by 5, MLP 3840->5632->4096 projector, LLaMA decoder; keys biomedclip, pubmedclip, fold, "
               "projector_hidden, text, image_token_id",
               [](const Config& c) -> std::shared_ptr<Model> {
                 auto m = std::make_shared<LiteGptModel>(c);
                 m->configure_generation(c);
                 return m;
               });

}  // namespace
}  // namespace facet::models::vlm
