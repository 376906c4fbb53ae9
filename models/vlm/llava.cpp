#include "models/vlm/llava.h"

#include "core/error.h"
#include "core/file_io.h"
#include "models/weights/converter.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace facet::models::vlm {
using json = nlohmann::json;

namespace {

// llava-hf's config.json (LlavaConfig): text_config, vision_config, image_token_index, feature selection.
void read_hf_config(LlavaOptions& o, const std::filesystem::path& path, const std::string& where) {
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const std::exception& e) {
    fail("{}: cannot read {}: {}", where, file.string(), e.what());
  }
  if (j.contains("text_config")) o.text = llm::LlamaConfig::from_json(j["text_config"], file.string() + ": text_config");
  if (j.contains("vision_config")) {
    const auto& v = j["vision_config"];
    auto get = [&](const char* key, int64_t& value) {
      if (v.contains(key)) value = v[key].get<int64_t>();
    };
    get("image_size", o.vision.image_size);
    get("patch_size", o.vision.patch_size);
    get("num_channels", o.vision.num_channels);
    get("hidden_size", o.vision.hidden_size);
    get("intermediate_size", o.vision.intermediate_size);
    get("num_hidden_layers", o.vision.num_hidden_layers);
    get("num_attention_heads", o.vision.num_attention_heads);
    if (v.contains("layer_norm_eps")) o.vision.layer_norm_eps = v["layer_norm_eps"].get<double>();
    if (v.contains("hidden_act")) o.vision.hidden_act = v["hidden_act"].get<std::string>();
  }
  if (j.contains("image_token_index")) o.image_token_id = j["image_token_index"].get<int64_t>();
  if (j.contains("image_token_id")) o.image_token_id = j["image_token_id"].get<int64_t>();
  if (j.contains("vision_feature_layer") && j["vision_feature_layer"].is_number())
    o.vision.feature_layer = j["vision_feature_layer"].get<int64_t>();
  if (j.contains("vision_feature_select_strategy"))
    o.vision.keep_cls = j["vision_feature_select_strategy"].get<std::string>() == "full";
  if (j.contains("projector_hidden_act") && j["projector_hidden_act"].get<std::string>() != "gelu")
    fail("{}: {}: projector_hidden_act '{}' is not supported (gelu)", where, file.string(), j["projector_hidden_act"].get<std::string>());
}

}  // namespace

LlavaOptions LlavaOptions::llava15_7b() {
  LlavaOptions o;
  o.text.max_position_embeddings = 4096;
  o.text.rms_norm_eps = 1e-5;
  o.text.pad_token_id = 0;
  return o;
}

LlavaOptions LlavaOptions::from(const Config& c) {
  LlavaOptions o = llava15_7b();
  // llava-hf's config.json first; the nodes below override it.
  if (c.has("hf_config")) read_hf_config(o, c.get<std::string>("hf_config"), c.where("hf_config"));
  if (c.has("vision")) o.vision = ClipVisionOptions::from(c.at("vision"), o.vision);
  if (c.has("text")) o.text = llm::LlamaConfig::from(c.at("text"));
  o.image_token_id = c.get<int64_t>("image_token_id", o.image_token_id);
  o.projector = c.get<std::string>("projector", o.projector);
  if (o.projector != "mlp2x_gelu" && o.projector != "linear")
    fail("{}: {}: unknown projector '{}' (mlp2x_gelu, linear)", c.where("projector"), c.full_key("projector"), o.projector);
  o.freeze_vision = c.get<bool>("freeze_vision", o.freeze_vision);
  o.loss_chunk_tokens = c.get_in_range<int64_t>("loss_chunk_tokens", o.loss_chunk_tokens, Range::at_least(1));
  o.gradient_checkpointing = c.get<bool>("gradient_checkpointing", o.gradient_checkpointing);
  o.text.validate();
  o.vision.validate(c.where("vision"));
  return o;
}

int64_t clip_vision_parameters(const ClipVisionOptions& o) {
  const int64_t d = o.hidden_size, i = o.intermediate_size;
  const int64_t embeddings = d + o.num_channels * o.patch_size * o.patch_size * d + o.num_positions() * d;
  const int64_t layer = 4 * (d * d + d) + 2 * 2 * d + (d * i + i) + (i * d + d);
  return embeddings + 2 * d + o.num_hidden_layers * layer + 2 * d;
}

int64_t LlavaOptions::num_parameters() const {
  return clip_vision_parameters(vision) + MlpProjectorImpl::count(vision.hidden_size, projector_hidden(), text.hidden_size) +
         text.num_parameters();
}

LlavaModel::LlavaModel(const LlavaOptions& options) : options_(options) {
  image_token_id_ = options.image_token_id;
  loss_chunk_tokens_ = options.loss_chunk_tokens;
  vision_tower = register_module("vision_tower", ClipVision(options.vision));
  multi_modal_projector = register_module(
      "multi_modal_projector", MlpProjector(options.vision.hidden_size, options.projector_hidden(), options.text.hidden_size));
  set_language_model(options.text);
  language_model_->model->gradient_checkpointing = options.gradient_checkpointing;
  if (options.freeze_vision) freeze(*vision_tower);
}

torch::Tensor LlavaModel::image_features(const torch::Tensor& images) {
  torch::Tensor f;
  if (any_trainable(*vision_tower)) {
    f = vision_tower->features(images);
  } else {
    torch::NoGradGuard no_grad;
    f = vision_tower->features(images);
  }
  return multi_modal_projector(f);
}

torch::Tensor LlavaModel::visual_tokens(const data::Batch& batch) {
  if (!batch.fields.contains("image")) fail("llava: the batch has no `image` field");
  return image_features(batch.fields.at("image").to(vision_tower->vision_model->pre_layrnorm->weight.device()));
}

namespace {

// The three LLaVA layouts -> Facet's (llava-hf's hub names), relative to the model.
std::string llava_name(const std::string& n) {
  auto tower = [](const std::string& rest) {  // names inside the CLIP tower, with or without vision_model.
    return "vision_tower." + (rest.starts_with("vision_model.") ? rest : "vision_model." + rest);
  };
  if (n.starts_with("model.mm_projector.0.")) return "multi_modal_projector.linear_1." + n.substr(21);
  if (n.starts_with("model.mm_projector.2.")) return "multi_modal_projector.linear_2." + n.substr(21);
  if (n.starts_with("model.vision_tower.vision_tower.")) return tower(n.substr(32));
  if (n.starts_with("model.vision_tower.")) return tower(n.substr(19));
  if (n.starts_with("vision_tower.")) return tower(n.substr(13));
  if (n.starts_with("model.multi_modal_projector.")) return n.substr(6);
  if (n.starts_with("model.language_model.")) return "language_model.model." + n.substr(21);
  if (n.starts_with("lm_head.")) return "language_model." + n;
  if (n.starts_with("model.")) return "language_model." + n;  // the LLaVA repository: embed_tokens, layers, norm
  return n;
}

ConversionPlan llava_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "multi_modal_projector.linear_1.weight", "LLaVA projector");
  ConversionPlan plan;
  for (const auto& t : file) {
    if (t.name.ends_with("rotary_emb.inv_freq") || t.name.ends_with("position_ids")) plan.drop(t.name, "buffer rebuilt at load");
    else if (t.name.starts_with("model.image_newline")) plan.drop(t.name, "LLaVA-NeXT's newline token (not LLaVA-1.5)");
    else plan.copy(t.name, at + llava_name(t.name));
  }
  // What a LLaVA checkpoint holds: not EmoLA's prior projector, nor adapters added after the build.
  std::vector<std::string> covers;
  for (const auto& [name, shape] : model) {
    if (!name.starts_with(at) || name.find(".lora_") != std::string::npos) continue;
    const std::string rest = name.substr(at.size());
    if (rest.starts_with("vision_tower.") || rest.starts_with("multi_modal_projector.") || rest.starts_with("language_model."))
      covers.push_back(name);
  }
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "llava",
               "LLaVA-1.5 checkpoints -> Facet's llava/emola: llava-hf hub names, transformers' in-memory names "
               "(model.language_model.*, lm_head) and the LLaVA repository's (model.mm_projector.0/2, "
               "model.vision_tower.vision_tower.vision_model.*, model.layers...)",
               make_converter(llava_plan));

FACET_REGISTER(model_registry(), "llava",
               "LLaVA-1.5: CLIP ViT-L/14-336 (penultimate layer, patches) -> mlp2x_gelu -> tokens at the <image> placeholder "
               "-> LLaMA decoder; keys vision, text, hf_config, image_token_id, projector, freeze_vision, gradient_checkpointing; "
               "loss: next-token CE",
               [](const Config& c) -> std::shared_ptr<Model> {
                 auto m = std::make_shared<LlavaModel>(c);
                 m->configure_generation(c);
                 return m;
               });

}  // namespace
}  // namespace facet::models::vlm
