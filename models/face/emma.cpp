#include "models/face/emma.h"


namespace facet::models::face {
namespace nn = torch::nn;

ViTOptions EmmaOptions::default_vit() {
  ViTOptions v;  // B/16 at 224, eps 1e-6, learned position embeddings (MAE fine-tuning)
  v.drop_path = 0.1;
  return v;
}

namespace {

int64_t positive(const Config& c, const std::string& key, int64_t fallback) {
  const int64_t v = c.get<int64_t>(key, fallback);
  if (v < 1) fail("{}: {}: expected a positive integer, got {}", c.where(key), c.full_key(key), v);
  return v;
}

}  // namespace

EmmaOptions EmmaOptions::from(const Config& c) {
  EmmaOptions o;
  if (c.has("vit")) {
    const Config v = c.at("vit");
    o.vit = ViTOptions::from(v);
    if (!v.has("drop_path")) o.vit.drop_path = default_vit().drop_path;
  }
  o.input = c.get<std::string>("input", o.input);
  o.head_hidden = positive(c, "head_hidden", o.head_hidden);
  o.num_expressions = positive(c, "num_expressions", o.num_expressions);
  o.num_aus = positive(c, "num_aus", o.num_aus);
  o.va_hidden = positive(c, "va_hidden", o.va_hidden);
  o.dan = c.get<bool>("dan", o.dan);
  o.freeze_dan = c.get<bool>("freeze_dan", o.freeze_dan);
  o.dan_classes = positive(c, "dan_classes", o.dan_classes);
  o.dan_heads = positive(c, "dan_heads", o.dan_heads);
  return o;
}

Emma::Emma(EmmaOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  vit_ = register_module("vit", ViT(o.vit));
  const int64_t vit_outputs = o.num_expressions + o.num_aus;
  // Registered inside the ViT, where the release keeps it (vit.head.0 / vit.head.2).
  head_ = vit_->register_module("head", nn::Sequential(nn::Linear(o.vit.embed_dim, o.head_hidden), nn::ReLU(),
                                                         nn::Linear(o.head_hidden, vit_outputs)));
  if (o.dan) cnn_ = register_module("cnn", Dan(DanOptions{o.dan_classes, o.dan_heads}));
  va_head_ = register_module("va_head", nn::Sequential(nn::Linear((o.dan ? o.dan_classes : 0) + vit_outputs, o.va_hidden),
                                                       nn::ReLU(), nn::Linear(o.va_hidden, 2)));
  if (cnn_ && o.freeze_dan)
    for (auto& p : cnn_->parameters()) p.set_requires_grad(false);
}

Outputs Emma::forward(const data::Batch& batch) {
  if (!batch.fields.contains(options_.input)) fail("emma: the batch has no field \"{}\" (model.input)", options_.input);
  const torch::Tensor& image = batch.fields.at(options_.input);
  const torch::Tensor vit_logits = head_->forward(vit_->forward(image));  // [B, expressions + AUs]
  TensorDict out;
  torch::Tensor va_input = vit_logits;
  if (cnn_) {
    const torch::Tensor dan_logits = cnn_->forward(image).logits;
    va_input = torch::cat({dan_logits, vit_logits}, 1);  // the release's order: CNN first
    out["dan_logits"] = dan_logits;
  }
  out["va"] = va_head_->forward(va_input);
  out["expression_logits"] = vit_logits.slice(1, 0, options_.num_expressions);
  out["au_logits"] = vit_logits.slice(1, options_.num_expressions);
  return out;
}

int64_t Emma::layer_id(const std::string& name) const {
  if (name.rfind("vit.", 0) == 0 && name.rfind("vit.head.", 0) != 0) return vit_->layer_id(name.substr(4));
  return num_layer_ids() - 1;
}

namespace {
FACET_REGISTER(model_registry(), "emma",
               "EMMA (ABAW4 MTL, Li et al. 2022): MAE ViT-B/16 expression+AU head, frozen DAN prior, VA head on both",
               [](const Config& c) { return std::make_shared<Emma>(EmmaOptions::from(c)); });
}  // namespace

}  // namespace facet::models::face
