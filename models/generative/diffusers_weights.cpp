// Weight converters for Stable Diffusion's published files, each finding its network in the model
// by an anchor tensor (so one entry per file, no add_prefix needed):
//
//   train:
//     init_weights:
//       - {path: sd15/unet/diffusion_pytorch_model.safetensors, convert: diffusers_unet}
//       - {path: sd15/vae/diffusion_pytorch_model.safetensors, convert: diffusers_vae}
//       - {path: sd15/text_encoder/model.safetensors, convert: hf_clip_text}
//
// diffusers' names are ours, so the UNet is a copy; the VAE's mid-block attention comes in two
// generations of names (query/key/value/proj_attn before diffusers 0.14, to_q/to_k/to_v/to_out.0
// after; diffusers renames on load too), and as 1x1 convolutions in files converted from the
// original checkpoints ([C, C, 1, 1] for a Linear's [C, C]).
#include "core/error.h"
#include "models/weights/converter.h"

#include <array>

namespace facet::models::generative {
namespace {

std::vector<std::string> names_under(const TargetShapes& model, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& [name, shape] : model)
    if (name.starts_with(prefix)) names.push_back(name);
  return names;
}

ConversionPlan unet_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "time_embedding.linear_1.weight", "diffusion UNet");
  ConversionPlan plan;
  for (const auto& t : file) plan.copy(t.name, at + t.name);
  plan.covers = names_under(model, at);
  return plan;
}

// "encoder.mid_block.attentions.0.query.weight" -> "encoder.mid_block.attentions.0.to_q.weight".
std::string vae_name(const std::string& name) {
  static const std::array<std::pair<std::string_view, std::string_view>, 4> renames{
      {{".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}}};
  if (name.find(".attentions.") == std::string::npos) return name;
  for (const auto& [old_part, new_part] : renames) {
    const size_t at = name.find(old_part);
    if (at != std::string::npos) return name.substr(0, at) + std::string(new_part) + name.substr(at + old_part.size());
  }
  return name;
}

ConversionPlan vae_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "post_quant_conv.weight", "VAE (AutoencoderKL)");
  ConversionPlan plan;
  for (const auto& t : file) {
    const std::string target = at + vae_name(t.name);
    const auto it = model.find(target);
    // A 1x1-convolution attention weight [C, C, 1, 1] for our Linear [C, C].
    if (it != model.end() && it->second.size() == 2 && t.shape.size() == 4 && t.shape[2] == 1 && t.shape[3] == 1) {
      TensorRecipe r{target, {t.name}, it->second, [](const std::vector<torch::Tensor>& s) { return s[0].flatten(1); },
                     "1x1 convolution weight taken as a Linear's"};
      plan.tensors.push_back(std::move(r));
    } else {
      plan.copy(t.name, target);
    }
  }
  plan.covers = names_under(model, at);
  return plan;
}

// transformers CLIPTextModel / CLIPModel files, with or without `text_model.`.
ConversionPlan clip_text_plan(const SourceTensors& file, const TargetShapes& model) {
  const std::string at = locate(model, "text_model.embeddings.token_embedding.weight", "CLIP text tower");
  ConversionPlan plan;
  for (const auto& t : file) {
    const std::string& n = t.name;
    if (n.starts_with("vision_model.") || n == "visual_projection.weight") plan.drop(n, "CLIP vision tower");
    else if (n == "text_projection.weight") plan.drop(n, "CLIP text projection (conditioning takes the hidden states)");
    else if (n == "logit_scale") plan.drop(n, "CLIP logit scale");
    else if (n.ends_with("position_ids")) plan.drop(n, "position ids (a buffer transformers rebuilds)");
    else if (n.starts_with("text_model.")) plan.copy(n, at + n);
    else plan.copy(n, at + "text_model." + n);
  }
  plan.covers = names_under(model, at + "text_model.");
  return plan;
}

FACET_REGISTER(converter_registry(), "diffusers_unet",
               "diffusers UNet2DConditionModel files (Stable Diffusion's unet/) -> the UNet in the model, found by name",
               make_converter(unet_plan));
FACET_REGISTER(converter_registry(), "diffusers_vae",
               "diffusers AutoencoderKL files (Stable Diffusion's vae/; old query/key/value/proj_attn and 1x1-conv "
               "attention weights accepted) -> the VAE in the model, found by name",
               make_converter(vae_plan));
FACET_REGISTER(converter_registry(), "hf_clip_text",
               "Hugging Face CLIP text tower (CLIPTextModel / CLIPModel files, Stable Diffusion's text_encoder/) -> the CLIP "
               "text model in the model; vision tower, projections and logit scale left out",
               make_converter(clip_text_plan));

}  // namespace
}  // namespace facet::models::generative
