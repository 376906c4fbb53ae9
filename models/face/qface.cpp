#include "models/face/qface.h"


#include <algorithm>
#include <cmath>
#include <set>

namespace facet::models::face {
namespace nn = torch::nn;

namespace {

Linear xavier_linear(int64_t in, int64_t out) {
  Linear l(in, out);
  if (!deferring_init()) {
    nn::init::xavier_uniform_(l->weight);
    nn::init::zeros_(l->bias);
  }
  return l;
}

nn::LayerNorm layer_norm(int64_t dim) { return nn::LayerNorm(nn::LayerNormOptions({dim})); }

// Softmax expectation over bin centres: [..., bins] logits -> [...] values.
torch::Tensor expectation(const torch::Tensor& logits, const torch::Tensor& centres) {
  return (torch::softmax(logits.to(torch::kFloat), -1) * centres).sum(-1);
}

}  // namespace

QFaceOptions QFaceOptions::from(const Config& c) {
  QFaceOptions o;
  if (c.has("vit")) o.vit = ViTOptions::from(c.at("vit"));
  o.tasks = c.get<std::vector<std::string>>("tasks", o.tasks);
  o.mff_blocks = c.get<std::vector<int64_t>>("mff_blocks", o.mff_blocks);
  o.mff_fusion = c.get<std::string>("mff_fusion", o.mff_fusion);
  o.dim = c.get<int64_t>("dim", o.dim);
  o.num_heads = c.get<int64_t>("num_heads", o.num_heads);
  o.num_layers = c.get<int64_t>("num_layers", o.num_layers);
  o.mlp_ratio = c.get<double>("mlp_ratio", o.mlp_ratio);
  o.dropout = c.get<double>("dropout", o.dropout);
  o.expression_classes = c.get<int64_t>("expression_classes", o.expression_classes);
  o.aus = c.get<std::vector<int>>("aus", o.aus);
  o.num_attributes = c.get<int64_t>("num_attributes", o.num_attributes);
  o.age_bins = c.get<int64_t>("age_bins", o.age_bins);
  if (c.has("age_range")) {
    const auto r = c.get<std::vector<double>>("age_range");
    if (r.size() != 2 || !(r[0] < r[1]))
      fail("{}: {}: expected [min, max] with min < max", c.where("age_range"), c.full_key("age_range"));
    o.age_min = r[0];
    o.age_max = r[1];
  }
  o.pose_bins = c.get<int64_t>("pose_bins", o.pose_bins);
  if (c.has("pose_range")) {
    const auto r = c.get<std::vector<double>>("pose_range");
    if (r.size() != 2 || !(r[0] < r[1]))
      fail("{}: {}: expected [min, max] with min < max", c.where("pose_range"), c.full_key("pose_range"));
    o.pose_min = r[0];
    o.pose_max = r[1];
  }
  o.return_bin_logits = c.get<bool>("return_bin_logits", o.return_bin_logits);
  o.return_attention = c.get<bool>("return_attention", o.return_attention);

  const auto& known = qface_task_names();
  if (o.tasks.empty()) fail("{}: {}: expected at least one of {}", c.where("tasks"), c.full_key("tasks"), fmt::join(known, ", "));
  std::set<std::string> seen;
  for (const auto& t : o.tasks) {
    if (std::find(known.begin(), known.end(), t) == known.end())
      fail("{}: {}: expected tasks among {}, got \"{}\"", c.where("tasks"), c.full_key("tasks"), fmt::join(known, ", "), t);
    if (!seen.insert(t).second) fail("{}: {}: \"{}\" is listed twice", c.where("tasks"), c.full_key("tasks"), t);
  }
  if (o.mff_blocks.empty()) fail("{}: {}: expected at least one block", c.where("mff_blocks"), c.full_key("mff_blocks"));
  for (size_t i = 0; i < o.mff_blocks.size(); ++i) {
    if (o.mff_blocks[i] < 1 || o.mff_blocks[i] > o.vit.depth)
      fail("{}: {}: expected block numbers in 1..{}, got {}", c.where("mff_blocks"), c.full_key("mff_blocks"), o.vit.depth,
           o.mff_blocks[i]);
    if (i > 0 && o.mff_blocks[i] <= o.mff_blocks[i - 1])
      fail("{}: {}: expected increasing block numbers, got {}", c.where("mff_blocks"), c.full_key("mff_blocks"),
           fmt::join(o.mff_blocks, ", "));
  }
  // The last block is always fused: it carries the global information, and blocks after the
  // deepest fused one would be computed for nothing.
  if (o.mff_blocks.back() != o.vit.depth)
    fail("{}: {}: expected the last block ({}) among them, got {}", c.where("mff_blocks"), c.full_key("mff_blocks"),
         o.vit.depth, fmt::join(o.mff_blocks, ", "));
  if (o.mff_fusion != "weighted" && o.mff_fusion != "concat")
    fail("{}: {}: expected weighted or concat, got \"{}\"", c.where("mff_fusion"), c.full_key("mff_fusion"), o.mff_fusion);
  if (o.num_heads <= 0 || o.dim <= 0 || o.dim % o.num_heads != 0)
    fail("{}: {}: expected a positive multiple of num_heads ({}), got {}", c.where("dim"), c.full_key("dim"), o.num_heads, o.dim);
  if (o.num_layers < 1) fail("{}: {}: expected >= 1, got {}", c.where("num_layers"), c.full_key("num_layers"), o.num_layers);
  if (!(o.mlp_ratio > 0)) fail("{}: {}: expected > 0, got {}", c.where("mlp_ratio"), c.full_key("mlp_ratio"), o.mlp_ratio);
  if (!(o.dropout >= 0 && o.dropout < 1)) fail("{}: {}: expected [0, 1), got {}", c.where("dropout"), c.full_key("dropout"), o.dropout);
  if (o.has("expression") && o.expression_classes < 2)
    fail("{}: {}: expected >= 2, got {}", c.where("expression_classes"), c.full_key("expression_classes"), o.expression_classes);
  if (o.has("au") && o.aus.empty()) fail("{}: {}: expected at least one AU", c.where("aus"), c.full_key("aus"));
  if (o.has("attributes") && o.num_attributes < 1)
    fail("{}: {}: expected >= 1, got {}", c.where("num_attributes"), c.full_key("num_attributes"), o.num_attributes);
  if (o.has("age") && o.age_bins < 2) fail("{}: {}: expected >= 2, got {}", c.where("age_bins"), c.full_key("age_bins"), o.age_bins);
  if (o.has("pose") && o.pose_bins < 2)
    fail("{}: {}: expected >= 2, got {}", c.where("pose_bins"), c.full_key("pose_bins"), o.pose_bins);
  return o;
}

bool QFaceOptions::has(const std::string& task) const { return std::find(tasks.begin(), tasks.end(), task) != tasks.end(); }

int64_t QFaceOptions::queries_of(const std::string& task) const {
  if (task == "expression") return expression_classes;
  if (task == "au") return static_cast<int64_t>(aus.size());
  if (task == "attributes") return num_attributes;
  if (task == "age" || task == "pose") return 1;
  fail("qface: unknown task \"{}\"", task);
}

// ---------------------------------------------------------------------------------------------
QFaceAttentionImpl::QFaceAttentionImpl(int64_t dim, int64_t heads, double dropout) : heads_(heads), dropout_(dropout) {
  q_proj = register_module("q_proj", xavier_linear(dim, dim));
  k_proj = register_module("k_proj", xavier_linear(dim, dim));
  v_proj = register_module("v_proj", xavier_linear(dim, dim));
  out_proj = register_module("out_proj", xavier_linear(dim, dim));
}

torch::Tensor QFaceAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& memory, torch::Tensor* weights) {
  const int64_t b = query.size(0), nq = query.size(1), nk = memory.size(1), d = query.size(2), dh = d / heads_;
  const auto split = [&](const torch::Tensor& x, int64_t n) { return x.view({b, n, heads_, dh}).transpose(1, 2); };  // [B, H, n, dh]
  const torch::Tensor q = split(q_proj(query), nq), k = split(k_proj(memory), nk), v = split(v_proj(memory), nk);
  const double p = is_training() ? dropout_ : 0.0;
  torch::Tensor out;
  if (weights == nullptr) {
    out = at::scaled_dot_product_attention(q, k, v, {}, p);
  } else {
    torch::Tensor attn = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(dh)), -1);
    *weights = attn.mean(1);
    out = torch::matmul(torch::dropout(attn, p, is_training()), v);
  }
  return out_proj(out.transpose(1, 2).reshape({b, nq, d}));
}

QFaceDecoderLayerImpl::QFaceDecoderLayerImpl(const QFaceOptions& o) {
  norm1 = register_module("norm1", layer_norm(o.dim));
  self_attn = register_module("self_attn", QFaceAttention(o.dim, o.num_heads, o.dropout));
  norm2 = register_module("norm2", layer_norm(o.dim));
  cross_attn = register_module("cross_attn", QFaceAttention(o.dim, o.num_heads, o.dropout));
  norm3 = register_module("norm3", layer_norm(o.dim));
  const auto hidden = static_cast<int64_t>(std::lround(static_cast<double>(o.dim) * o.mlp_ratio));
  fc1 = register_module("fc1", xavier_linear(o.dim, hidden));
  fc2 = register_module("fc2", xavier_linear(hidden, o.dim));
  dropout = register_module("dropout", nn::Dropout(o.dropout));
}

torch::Tensor QFaceDecoderLayerImpl::forward(const torch::Tensor& queries, const torch::Tensor& memory,
                                             torch::Tensor* cross_weights) {
  torch::Tensor x = norm1(queries);
  torch::Tensor q = queries + dropout(self_attn(x, x));
  q = q + dropout(cross_attn(norm2(q), memory, cross_weights));
  return q + dropout(fc2(dropout(torch::gelu(fc1(norm3(q))))));
}

QueryClassifierImpl::QueryClassifierImpl(int64_t queries, int64_t dim) {
  // nn.Linear's default initialisation, one row per query.
  const double bound = 1.0 / std::sqrt(static_cast<double>(dim));
  weight = register_parameter("weight", torch::empty({queries, dim}).uniform_(-bound, bound));
  bias = register_parameter("bias", torch::empty({queries}).uniform_(-bound, bound));
}

// ---------------------------------------------------------------------------------------------
QFace::QFace(QFaceOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  vit_ = register_module("vit", ViT(o.vit));
  const int64_t width = o.vit.embed_dim, d = o.dim, n = static_cast<int64_t>(o.mff_blocks.size());
  // Options built in code skip from()'s checks; these would otherwise fail deep inside forward.
  if (o.mff_blocks.empty() || o.mff_blocks.back() != o.vit.depth || !std::is_sorted(o.mff_blocks.begin(), o.mff_blocks.end()))
    fail("qface: mff_blocks must increase and end with the last block ({}), got {}", o.vit.depth, fmt::join(o.mff_blocks, ", "));
  if (o.tasks.empty()) fail("qface: no task selected");
  intermediate_.assign(o.mff_blocks.begin(), o.mff_blocks.end() - 1);
  mff_norms_ = register_module("mff_norms", nn::ModuleList());
  for (size_t i = 0; i < intermediate_.size(); ++i)
    mff_norms_->push_back(nn::LayerNorm(nn::LayerNormOptions({width}).eps(o.vit.norm_eps)));
  mff_proj_ = register_module("mff_proj", nn::ModuleList());
  if (o.mff_fusion == "weighted") {
    for (int64_t i = 0; i < n; ++i) mff_proj_->push_back(xavier_linear(width, d));
    mff_logits_ = register_parameter("mff_logits", torch::zeros({n}));  // equal weights at the start
  } else {
    mff_proj_->push_back(xavier_linear(n * width, d));
  }
  memory_norm_ = register_module("memory_norm", layer_norm(d));

  for (const auto& task : o.tasks) queries_.push_back(register_parameter(task + "_queries", torch::randn({o.queries_of(task), d})));
  layers_ = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) layers_->push_back(QFaceDecoderLayer(o));
  decoder_norm_ = register_module("decoder_norm", layer_norm(d));

  if (o.has("expression")) expression_head_ = register_module("expression_head", QueryClassifier(o.expression_classes, d));
  if (o.has("au")) au_head_ = register_module("au_head", QueryClassifier(static_cast<int64_t>(o.aus.size()), d));
  if (o.has("attributes")) attribute_head_ = register_module("attribute_head", QueryClassifier(o.num_attributes, d));
  if (o.has("age")) {
    age_head_ = register_module("age_head", Linear(d, o.age_bins));
    age_centres_ = register_buffer("age_centres", torch::linspace(o.age_min, o.age_max, o.age_bins));
  }
  if (o.has("pose")) {
    pose_head_ = register_module("pose_head", Linear(d, 3 * o.pose_bins));
    pose_centres_ = register_buffer("pose_centres", torch::linspace(o.pose_min, o.pose_max, o.pose_bins));
  }
}

Outputs QFace::forward(const data::Batch& batch) {
  const auto& o = options_;
  if (!batch.fields.contains("image")) fail("qface: the batch has no \"image\" field");
  const torch::Tensor& image = batch.fields.at("image");
  const ViTTokens t = vit_->forward_tokens(image, 0.0, {}, intermediate_);
  std::vector<torch::Tensor> stages;
  for (size_t i = 0; i < intermediate_.size(); ++i) stages.push_back(mff_norms_[i]->as<nn::LayerNorm>()->forward(t.hidden[i]));
  stages.push_back(t.tokens);  // the last block through the ViT's final norm
  torch::Tensor memory, mff_weights;
  if (o.mff_fusion == "weighted") {
    mff_weights = torch::softmax(mff_logits_, 0);
    for (size_t i = 0; i < stages.size(); ++i) {
      const torch::Tensor s = mff_proj_[i]->as<Linear>()->forward(stages[i]) * mff_weights[static_cast<int64_t>(i)];
      memory = memory.defined() ? memory + s : s;
    }
  } else {
    memory = mff_proj_[0]->as<Linear>()->forward(torch::cat(stages, -1));
  }
  memory = memory_norm_(memory);  // [B, 1 + N, d]

  const int64_t b = image.size(0);
  torch::Tensor q = torch::cat(queries_, 0).unsqueeze(0).expand({b, -1, -1});
  torch::Tensor attention;
  for (size_t i = 0; i < layers_->size(); ++i) {
    const bool last = i + 1 == layers_->size();
    q = layers_[i]->as<QFaceDecoderLayer>()->forward(q, memory, o.return_attention && last ? &attention : nullptr);
  }
  q = decoder_norm_(q);

  TensorDict out;
  int64_t offset = 0;
  for (const auto& task : o.tasks) {
    const int64_t n = o.queries_of(task);
    const torch::Tensor x = q.narrow(1, offset, n);
    offset += n;
    if (task == "expression") {
      out["expression_logits"] = expression_head_(x);
    } else if (task == "au") {
      out["au_logits"] = au_head_(x);
      if (o.tasks.size() == 1) out["logits"] = out["au_logits"];
    } else if (task == "attributes") {
      out["attribute_logits"] = attribute_head_(x);
    } else if (task == "age") {
      const torch::Tensor logits = age_head_(x.squeeze(1));  // [B, bins]
      out["age"] = expectation(logits, age_centres_);
      if (o.return_bin_logits) out["age_logits"] = logits;
    } else if (task == "pose") {
      const torch::Tensor logits = pose_head_(x.squeeze(1)).view({b, 3, o.pose_bins});
      out["pose"] = expectation(logits, pose_centres_);
      if (o.return_bin_logits) out["pose_logits"] = logits;
    }
  }
  if (o.return_attention) {
    const int64_t grid = o.vit.image_size / o.vit.patch_size;
    out["cross_attention"] = attention.narrow(2, 1, grid * grid).reshape({b, attention.size(1), grid, grid});
    if (mff_weights.defined()) out["mff_weights"] = mff_weights.detach().unsqueeze(0).expand({b, -1});
  }
  return out;
}

int64_t QFace::layer_id(const std::string& name) const {
  if (name.rfind("vit.", 0) == 0) return vit_->layer_id(name.substr(4));
  return num_layer_ids() - 1;
}

namespace {
FACET_REGISTER(model_registry(), "qface",
               "Q-Face multi-task face model (Sun et al. 2024): ViT + multi-stage feature fusion + task query decoder "
               "(expression, AU, attributes, age, pose), reconstructed",
               [](const Config& c) { return std::make_shared<QFace>(QFaceOptions::from(c)); });
}  // namespace

}  // namespace facet::models::face
