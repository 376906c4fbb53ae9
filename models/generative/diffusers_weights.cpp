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
//
// The original single-file checkpoints (CompVis / RunwayML `v1-5-pruned-emaonly.safetensors`: the
// LDM repository's names, UNet under model.diffusion_model., VAE under first_stage_model., CLIP text
// tower under cond_stage_model.transformer.) load in one entry with `convert: sd_single_file`, each
// part into the network of the model that has it; EMA copies, the schedule's buffers and position
// ids are left out by name. The name tables are diffusers' conversion script's, with the block
// indices computed from the model's own layout (layers per block, which blocks attend).
#include "core/error.h"
#include "core/text.h"
#include "models/weights/converter.h"

#include <array>
#include <optional>
#include <set>

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

// --- the LDM single file ------------------------------------------------------------------------------

// `name` with its leading `from` replaced by `to`, or nullopt when it does not start with `from`.
std::optional<std::string> swap_prefix(const std::string& name, std::string_view from, std::string_view to) {
  if (!name.starts_with(from)) return std::nullopt;
  return std::string(to) + name.substr(from.size());
}

// "down_blocks.3.resnets.1.norm1.weight" -> {3, 1, "norm1.weight"} (head "down_blocks.", middle
// "resnets."); a middle without an index after it ("downsamplers.0.conv.") leaves j at 0.
struct Indexed {
  int64_t i = 0, j = 0;
  std::string rest;
};
std::optional<Indexed> indexed(const std::string& name, std::string_view head, std::string_view middle, bool indexed_middle = true) {
  if (!name.starts_with(head)) return std::nullopt;
  size_t at = head.size();
  const size_t dot = name.find('.', at);
  if (dot == std::string::npos) return std::nullopt;
  Indexed r;
  r.i = std::stoll(name.substr(at, dot - at));
  at = dot + 1;
  if (middle.empty()) {
    r.rest = name.substr(at);
    return r;
  }
  if (name.compare(at, middle.size(), middle) != 0) return std::nullopt;
  at += middle.size();
  if (!indexed_middle) {
    r.rest = name.substr(at);
    return r;
  }
  const size_t dot2 = name.find('.', at);
  if (dot2 == std::string::npos) return std::nullopt;
  r.j = std::stoll(name.substr(at, dot2 - at));
  r.rest = name.substr(dot2 + 1);
  return r;
}

// A resnet's diffusers names -> LDM's (UNet: in_layers / out_layers; VAE keeps norm1 ... and renames the shortcut).
std::string ldm_unet_resnet(const std::string& rest) {
  static const std::array<std::pair<std::string_view, std::string_view>, 6> map{{{"norm1.", "in_layers.0."},
                                                                                 {"conv1.", "in_layers.2."},
                                                                                 {"time_emb_proj.", "emb_layers.1."},
                                                                                 {"norm2.", "out_layers.0."},
                                                                                 {"conv2.", "out_layers.3."},
                                                                                 {"conv_shortcut.", "skip_connection."}}};
  for (const auto& [from, to] : map)
    if (auto r = swap_prefix(rest, from, to)) return *r;
  return rest;
}

std::string ldm_vae_resnet(const std::string& rest) { return swap_prefix(rest, "conv_shortcut.", "nin_shortcut.").value_or(rest); }

// The UNet's layout as the model has it: resnets per down block, and which up blocks attend.
struct UNetLayout {
  int64_t layers = 0;
  std::set<int64_t> up_attends;
};

UNetLayout unet_layout(const TargetShapes& model, const std::string& at) {
  UNetLayout l;
  for (const auto& [name, shape] : model) {
    if (!name.starts_with(at)) continue;
    const std::string n = name.substr(at.size());
    if (auto d = indexed(n, "down_blocks.", "resnets."); d && d->i == 0) l.layers = std::max(l.layers, d->j + 1);
    if (auto u = indexed(n, "up_blocks.", "attentions.")) l.up_attends.insert(u->i);
  }
  return l;
}

// A UNet name (relative to the UNet) -> its LDM name (relative to model.diffusion_model.).
std::string ldm_unet_name(const std::string& n, const UNetLayout& l) {
  static const std::array<std::pair<std::string_view, std::string_view>, 5> top{{{"time_embedding.linear_1.", "time_embed.0."},
                                                                                 {"time_embedding.linear_2.", "time_embed.2."},
                                                                                 {"conv_in.", "input_blocks.0.0."},
                                                                                 {"conv_norm_out.", "out.0."},
                                                                                 {"conv_out.", "out.2."}}};
  for (const auto& [from, to] : top)
    if (auto r = swap_prefix(n, from, to)) return *r;
  const int64_t per = l.layers + 1;  // LDM's entries per down block (resnets + the downsampler), per up block (resnets)
  if (auto d = indexed(n, "down_blocks.", "resnets."))
    return fmt::format("input_blocks.{}.0.{}", 1 + d->i * per + d->j, ldm_unet_resnet(d->rest));
  if (auto d = indexed(n, "down_blocks.", "attentions.")) return fmt::format("input_blocks.{}.1.{}", 1 + d->i * per + d->j, d->rest);
  if (auto d = indexed(n, "down_blocks.", "downsamplers.0.conv.", false))
    return fmt::format("input_blocks.{}.0.op.{}", (d->i + 1) * per, d->rest);
  if (auto m = swap_prefix(n, "mid_block.attentions.0.", "middle_block.1.")) return *m;
  if (auto m = indexed(n, "mid_block.resnets.", "")) return fmt::format("middle_block.{}.{}", 2 * m->i, ldm_unet_resnet(m->rest));
  if (auto u = indexed(n, "up_blocks.", "resnets."))
    return fmt::format("output_blocks.{}.0.{}", u->i * per + u->j, ldm_unet_resnet(u->rest));
  if (auto u = indexed(n, "up_blocks.", "attentions.")) return fmt::format("output_blocks.{}.1.{}", u->i * per + u->j, u->rest);
  if (auto u = indexed(n, "up_blocks.", "upsamplers.0.conv.", false))
    return fmt::format("output_blocks.{}.{}.conv.{}", u->i * per + l.layers, l.up_attends.contains(u->i) ? 2 : 1, u->rest);
  return n;
}

// A VAE name (relative to the VAE) -> its LDM name (relative to first_stage_model.); `up` = the decoder's blocks.
std::string ldm_vae_name(const std::string& n, int64_t up) {
  for (const std::string side : {"encoder.", "decoder."}) {
    if (!n.starts_with(side)) continue;
    const std::string m = n.substr(side.size());
    if (auto d = indexed(m, "down_blocks.", "resnets.")) return fmt::format("{}down.{}.block.{}.{}", side, d->i, d->j, ldm_vae_resnet(d->rest));
    if (auto d = indexed(m, "down_blocks.", "downsamplers.0.", false)) return fmt::format("{}down.{}.downsample.{}", side, d->i, d->rest);
    if (auto u = indexed(m, "up_blocks.", "resnets."))
      return fmt::format("{}up.{}.block.{}.{}", side, up - 1 - u->i, u->j, ldm_vae_resnet(u->rest));
    if (auto u = indexed(m, "up_blocks.", "upsamplers.0.", false)) return fmt::format("{}up.{}.upsample.{}", side, up - 1 - u->i, u->rest);
    if (auto r = indexed(m, "mid_block.resnets.", "")) return fmt::format("{}mid.block_{}.{}", side, r->i + 1, ldm_vae_resnet(r->rest));
    if (auto a = swap_prefix(m, "mid_block.attentions.0.", "")) {
      static const std::array<std::pair<std::string_view, std::string_view>, 5> attn{
          {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}}};
      for (const auto& [from, to] : attn)
        if (auto r = swap_prefix(*a, from, to)) return side + "mid.attn_1." + *r;
    }
    if (auto r = swap_prefix(m, "conv_norm_out.", "norm_out.")) return side + *r;
    return n;
  }
  return n;
}

// Where one part of the model sits (nullopt when the model has none).
std::optional<std::string> find_part(const TargetShapes& model, const std::string& anchor, const std::string& what) {
  const auto found = prefixes_of(model, anchor);
  if (found.empty()) return std::nullopt;
  if (found.size() > 1) return locate(model, anchor, what);  // fails naming them
  return found.front();
}

ConversionPlan sd_single_file_plan(const SourceTensors& file, const TargetShapes& model) {
  std::map<std::string, const SourceTensor*> by_name;
  for (const auto& t : file) by_name[t.name] = &t;
  ConversionPlan plan;
  std::vector<std::string> covers;
  std::set<std::string> used;
  // Plans every model tensor under `at` whose LDM name (`ldm`) the file holds.
  auto take = [&](const std::string& at, const std::string& file_prefix, auto&& ldm) {
    for (const auto& [name, shape] : model) {
      if (!name.starts_with(at)) continue;
      covers.push_back(name);
      const std::string source = file_prefix + ldm(name.substr(at.size()));
      const auto it = by_name.find(source);
      if (it == by_name.end()) continue;  // the loader names what is missing
      used.insert(source);
      const auto& s = it->second->shape;
      if (shape.size() == 2 && s.size() == 4 && s[2] == 1 && s[3] == 1) {
        plan.tensors.push_back({name, {source}, shape, [](const std::vector<torch::Tensor>& v) { return v[0].flatten(1); },
                                "1x1 convolution weight taken as a Linear's"});
      } else {
        plan.copy(source, name);
      }
    }
  };
  const bool has_unet = std::any_of(file.begin(), file.end(), [](const auto& t) { return t.name.starts_with("model.diffusion_model."); });
  const bool has_vae = std::any_of(file.begin(), file.end(), [](const auto& t) { return t.name.starts_with("first_stage_model."); });
  const bool has_text = std::any_of(file.begin(), file.end(), [](const auto& t) { return t.name.starts_with("cond_stage_model.transformer."); });
  if (!has_unet && !has_vae && !has_text)
    fail("not a Stable Diffusion single-file checkpoint: no model.diffusion_model., first_stage_model. or cond_stage_model.transformer. "
         "tensors (a diffusers folder's files load with diffusers_unet / diffusers_vae / hf_clip_text)");
  const auto unet = find_part(model, "time_embedding.linear_1.weight", "diffusion UNet");
  const auto vae = find_part(model, "post_quant_conv.weight", "VAE (AutoencoderKL)");
  const auto text = find_part(model, "text_model.embeddings.token_embedding.weight", "CLIP text tower");
  if (unet && has_unet) {
    const UNetLayout layout = unet_layout(model, *unet);
    take(*unet, "model.diffusion_model.", [&](const std::string& n) { return ldm_unet_name(n, layout); });
  }
  if (vae && has_vae) {
    int64_t up = 0;  // the decoder's blocks (LDM numbers them the other way round)
    for (const auto& [name, shape] : model)
      if (name.starts_with(*vae))
        if (auto u = indexed(name.substr(vae->size()), "decoder.up_blocks.", "")) up = std::max(up, u->i + 1);
    take(*vae, "first_stage_model.", [&](const std::string& n) { return ldm_vae_name(n, up); });
  }
  if (text && has_text) {
    // transformers' CLIPTextModel names (text_model.*); files saved with transformers < 4.x lack that level.
    const bool nested = by_name.contains("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
    take(*text, "cond_stage_model.transformer.",
         [&](const std::string& n) { return nested ? n : n.substr(std::string("text_model.").size()); });
  }
  for (const auto& t : file) {
    if (used.contains(t.name)) continue;
    const std::string& n = t.name;
    if (n.starts_with("model_ema.")) plan.drop(n, "EMA copy (the -emaonly files already hold the EMA weights in place)");
    else if (n == "alphas_cumprod" || n == "alphas_cumprod_prev" || n == "betas" || n.starts_with("sqrt_") || n.starts_with("log_one_minus") ||
             n.starts_with("posterior_") || n == "lvlb_weights" || n == "logvar")
      plan.drop(n, "the noise schedule's buffers (rebuilt from the model's schedule)");
    else if (n.ends_with("position_ids")) plan.drop(n, "position ids (a buffer transformers rebuilds)");
    else if (n.starts_with("model.diffusion_model.") && !unet) plan.drop(n, "the model has no diffusion UNet");
    else if (n.starts_with("first_stage_model.") && !vae) plan.drop(n, "the model has no VAE");
    else if (n.starts_with("cond_stage_model.") && !text) plan.drop(n, "the model has no CLIP text tower");
    // Anything else stays unplanned: the loader names it as unexpected.
  }
  plan.covers = std::move(covers);
  return plan;
}

FACET_REGISTER(converter_registry(), "sd_single_file",
               "Stable Diffusion 1.x original single-file checkpoints (v1-5-pruned-emaonly.safetensors: model.diffusion_model., "
               "first_stage_model., cond_stage_model.transformer.) -> the model's UNet, VAE and CLIP text tower in one entry; EMA "
               "copies and schedule buffers left out",
               make_converter(sd_single_file_plan));

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
