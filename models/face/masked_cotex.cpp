#include "models/face/masked_cotex.h"

namespace facet::models::face {
namespace nn = torch::nn;

ViTOptions MaskedCotexOptions::default_vit() {
  ViTOptions v;
  v.drop_path = 0.1;
  return v;
}

MaskedCotexOptions MaskedCotexOptions::from(const Config& c) {
  MaskedCotexOptions o;
  if (c.has("vit")) {
    const Config v = c.at("vit");
    o.vit = ViTOptions::from(v);
    if (!v.has("drop_path")) o.vit.drop_path = default_vit().drop_path;
  }
  o.input = c.get<std::string>("input", o.input);
  o.views = c.get<int64_t>("views", o.views);
  o.num_classes = c.get<int64_t>("num_classes", o.num_classes);
  o.mask_ratio = c.get<double>("mask_ratio", o.mask_ratio);
  if (o.views < 1) fail("{}: {}: expected at least 1 view, got {}", c.where("views"), c.full_key("views"), o.views);
  if (o.num_classes < 2)
    fail("{}: {}: expected at least 2 classes, got {}", c.where("num_classes"), c.full_key("num_classes"), o.num_classes);
  // At least one patch token must survive: ⌊N (1 - r)⌋ >= 1.
  const auto kept = static_cast<int64_t>(static_cast<double>(o.vit.num_patches()) * (1 - o.mask_ratio));
  if (!(o.mask_ratio >= 0 && o.mask_ratio < 1) || kept < 1)
    fail("{}: {}: expected a ratio in [0, 1) that keeps at least one of the {} patches, got {}", c.where("mask_ratio"),
         c.full_key("mask_ratio"), o.vit.num_patches(), o.mask_ratio);
  return o;
}

MaskedCotex::MaskedCotex(MaskedCotexOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  auto list = register_module("vits", nn::ModuleList());
  for (int64_t i = 0; i < o.views; ++i) {
    ViT vit(o.vit);
    list->push_back(vit);
    nn::Linear head(o.vit.embed_dim, o.num_classes);
    {
      // MAE fine-tuning's trunc_normal_(std=2e-5): at this scale the ±2 truncation never applies.
      torch::NoGradGuard no_grad;
      nn::init::normal_(head->weight, 0.0, 2e-5);
      nn::init::zeros_(head->bias);
    }
    vit->register_module("head", head);
    vits_.push_back(vit);
    heads_.push_back(head);
  }
}

Outputs MaskedCotex::forward(const data::Batch& batch) {
  if (!batch.fields.contains(options_.input))
    fail("masked_cotex: the batch has no field \"{}\" (model.input)", options_.input);
  const torch::Tensor& image = batch.fields.at(options_.input);
  const double ratio = is_training() ? options_.mask_ratio : 0.0;
  std::vector<torch::Tensor> logits, masks;
  for (size_t i = 0; i < vits_.size(); ++i) {
    // Each view draws its own noise: the views see different token subsets.
    const ViTTokens t = vits_[i]->forward_tokens(image, ratio);
    logits.push_back(heads_[i]->forward(t.tokens.select(1, 0)));
    if (t.mask.defined()) masks.push_back(t.mask);
  }
  TensorDict out;
  out["view_logits"] = torch::stack(logits, 0);
  out["logits"] = out["view_logits"].sum(0);
  if (!masks.empty()) out["view_masks"] = torch::stack(masks, 0);
  return out;
}

int64_t MaskedCotex::layer_id(const std::string& name) const {
  // vits.<i>.<ViT name>; the heads share the top id.
  if (name.rfind("vits.", 0) != 0) return -1;
  const size_t dot = name.find('.', 5);
  if (dot == std::string::npos) return -1;
  const std::string rest = name.substr(dot + 1);
  if (rest.rfind("head.", 0) == 0) return num_layer_ids() - 1;
  return vits_.front()->layer_id(rest);
}

namespace {
FACET_REGISTER(model_registry(), "masked_cotex",
               "Masked CoTEX (ABAW4 LSD, Li et al. 2022): ViT-B/16 views with independent token dropping, logits summed",
               [](const Config& c) { return std::make_shared<MaskedCotex>(MaskedCotexOptions::from(c)); });
}  // namespace

}  // namespace facet::models::face
