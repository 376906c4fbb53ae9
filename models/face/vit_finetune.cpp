#include "models/face/vit_finetune.h"

#include "core/error.h"
#include "core/log.h"

#include <cmath>

namespace facet::models::face {

torch::Tensor resize_position_embedding(const torch::Tensor& pos_embed, int64_t grid, int64_t extra) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || pos_embed.size(1) <= extra)
    fail("pos_embed: expected [1, {} + patches, dim], got {}", extra, pos_embed.sizes());
  const int64_t patches = pos_embed.size(1) - extra, dim = pos_embed.size(2);
  const auto old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  if (old_grid * old_grid != patches) fail("pos_embed: {} patch positions do not form a square grid", patches);
  if (old_grid == grid) return pos_embed;
  const torch::Tensor cls = pos_embed.slice(1, 0, extra);
  const torch::Tensor image = pos_embed.slice(1, extra).reshape({1, old_grid, old_grid, dim}).permute({0, 3, 1, 2}).to(torch::kFloat);
  const torch::Tensor resized = torch::nn::functional::interpolate(
      image, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{grid, grid})
                 .mode(torch::kBicubic)
                 .align_corners(false));
  return torch::cat({cls, resized.permute({0, 2, 3, 1}).reshape({1, grid * grid, dim}).to(pos_embed.dtype())}, 1);
}

safetensors::LoadReport load_vit_checkpoint(ViTImpl& vit, const std::filesystem::path& path) {
  safetensors::TensorMap tensors = safetensors::load(path);
  bool hugging_face = false;
  for (const auto& [name, t] : tensors)
    if (name.find("embeddings.patch_embeddings.") != std::string::npos || name.find("encoder.layer.") != std::string::npos ||
        name.rfind("layers.", 0) == 0)
      hugging_face = true;
  if (hugging_face) tensors = convert_hf_vit(tensors);
  // MAE fine-tuning with global pooling replaces the final norm by fc_norm (same shape, applied to
  // the pooled tokens); it stands in for the norm when the file has no other.
  for (const std::string prefix : {"", "module.", "vit.", "module.vit."})
    for (const std::string leaf : {"weight", "bias"})
      if (auto fc = tensors.find(prefix + "fc_norm." + leaf); fc != tensors.end() && !tensors.count(prefix + "norm." + leaf)) {
        tensors[prefix + "norm." + leaf] = fc->second;
        tensors.erase(fc);
      }

  safetensors::NameMap names;
  // MAE's fine-tuning drops the pre-training classifier, decoder and mask token.
  names.ignore = {R"(^(module\.)?(vit\.)?(head\.|fc_norm\.|decoder|mask_token$))"};
  names.prefixes = {{"module.vit.", ""}, {"module.", ""}, {"vit.", ""}};  // the first that matches is stripped
  for (auto& [name, t] : tensors)
    if (auto mapped = names.apply(name); mapped && *mapped == "pos_embed") {
      const int64_t grid = vit.options().image_size / vit.options().patch_size;
      if (t.dim() == 3 && t.size(1) != 1 + grid * grid) {
        log::info("{}: position embeddings resized from {} to {} patches", path.string(), t.size(1) - 1, grid * grid);
        t = resize_position_embedding(t, grid);
      }
    }
  safetensors::LoadReport report = safetensors::load_into(vit, tensors, names, /*strict=*/false, path.string());
  std::erase_if(report.missing, [](const std::string& n) { return n.rfind("head.", 0) == 0; });
  if (!report.ok()) fail("{}: not a ViT checkpoint of this configuration: {}", path.string(), report.summary());
  return report;
}

}  // namespace facet::models::face
