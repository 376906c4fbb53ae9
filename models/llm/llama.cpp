#include "models/llm/llama.h"

#include "core/error.h"
#include "core/file_io.h"
#include "models/llm/checkpointing.h"
#include "models/llm/lm_loss.h"
#include "models/weights/init_weights.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <numbers>

namespace facet::models::llm {

using nlohmann::json;

// --- config -----------------------------------------------------------------------------------------

namespace {

template <class T>
void read_key(const json& j, const char* key, T& out, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const json::exception& e) {
    throw Error(origin + ": " + key + ": unexpected value " + it->dump() + " (" + e.what() + ")");
  }
}

RopeScaling read_rope(const json& node, const std::string& origin, double& theta) {
  RopeScaling r;
  read_key(node, "rope_theta", theta, origin);  // transformers 5 keeps it inside rope_parameters
  if (node.contains("rope_type")) read_key(node, "rope_type", r.type, origin);
  else read_key(node, "type", r.type, origin);  // transformers 4's rope_scaling {type: linear}
  read_key(node, "factor", r.factor, origin);
  read_key(node, "low_freq_factor", r.low_freq_factor, origin);
  read_key(node, "high_freq_factor", r.high_freq_factor, origin);
  read_key(node, "original_max_position_embeddings", r.original_max_position_embeddings, origin);
  return r;
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(origin + ": expected a JSON object");
  LlamaConfig c;
  read_key(j, "model_type", c.model_type, origin);
  read_key(j, "vocab_size", c.vocab_size, origin);
  read_key(j, "hidden_size", c.hidden_size, origin);
  read_key(j, "intermediate_size", c.intermediate_size, origin);
  read_key(j, "num_hidden_layers", c.num_hidden_layers, origin);
  read_key(j, "num_attention_heads", c.num_attention_heads, origin);
  read_key(j, "num_key_value_heads", c.num_key_value_heads, origin);
  read_key(j, "head_dim", c.head_dim, origin);
  read_key(j, "max_position_embeddings", c.max_position_embeddings, origin);
  read_key(j, "rms_norm_eps", c.rms_norm_eps, origin);
  read_key(j, "rope_theta", c.rope_theta, origin);
  for (const char* key : {"rope_scaling", "rope_parameters"})
    if (j.contains(key) && j.at(key).is_object()) c.rope_scaling = read_rope(j.at(key), origin + ": " + key, c.rope_theta);
  read_key(j, "tie_word_embeddings", c.tie_word_embeddings, origin);
  read_key(j, "attention_bias", c.attention_bias, origin);
  read_key(j, "mlp_bias", c.mlp_bias, origin);
  read_key(j, "sliding_window", c.sliding_window, origin);
  read_key(j, "bos_token_id", c.bos_token_id, origin);
  read_key(j, "pad_token_id", c.pad_token_id, origin);
  read_key(j, "hidden_act", c.hidden_act, origin);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) c.eos_token_ids = it->get<std::vector<int64_t>>();
    else if (it->is_number_integer()) c.eos_token_ids = {it->get<int64_t>()};
    else throw Error(origin + ": eos_token_id: expected an integer or a list, got " + it->dump());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(origin + ": " + e.what());
  }
  return c;
}

LlamaConfig LlamaConfig::from_file(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw Error(file.string() + ": not valid JSON: " + e.what());
  }
  return from_json(j, file.string());
}

LlamaConfig LlamaConfig::from(const Config& c) {
  json j = json::object();
  if (c.has("config")) {
    const auto path = c.get<std::string>("config");
    const auto file = std::filesystem::is_directory(path) ? std::filesystem::path(path) / "config.json" : std::filesystem::path(path);
    try {
      j = json::parse(read_file(file));
    } catch (const std::exception& e) {
      throw Error(c.where("config") + ": cannot read " + file.string() + ": " + e.what());
    }
  }
  // Inline keys override the file's.
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window", "bos_token_id",
                          "pad_token_id", "eos_token_id"})
    if (c.has(key)) j[key] = c.get<int64_t>(key);
  for (const char* key : {"rms_norm_eps", "rope_theta"})
    if (c.has(key)) j[key] = c.get<double>(key);
  for (const char* key : {"tie_word_embeddings", "attention_bias", "mlp_bias"})
    if (c.has(key)) j[key] = c.get<bool>(key);
  for (const char* key : {"model_type", "hidden_act"})
    if (c.has(key)) j[key] = c.get<std::string>(key);
  if (c.has("rope_scaling")) {
    const Config r = c.at("rope_scaling");
    json s = json::object();
    if (r.has("type")) s["rope_type"] = r.get<std::string>("type");
    for (const char* key : {"factor", "low_freq_factor", "high_freq_factor"})
      if (r.has(key)) s[key] = r.get<double>(key);
    if (r.has("original_max_position_embeddings"))
      s["original_max_position_embeddings"] = r.get<int64_t>("original_max_position_embeddings");
    j["rope_scaling"] = s;
    j.erase("rope_parameters");
    if (!s.contains("rope_theta") && c.has("rope_theta")) j["rope_scaling"]["rope_theta"] = c.get<double>("rope_theta");
  }
  if (c.has("rope_theta") && j.contains("rope_parameters") && j["rope_parameters"].is_object())
    j["rope_parameters"]["rope_theta"] = c.get<double>("rope_theta");
  return from_json(j, c.where());
}

json LlamaConfig::to_json() const {
  json j = {{"model_type", model_type}, {"vocab_size", vocab_size}, {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size}, {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads}, {"num_key_value_heads", kv_heads()}, {"head_dim", dim_per_head()},
            {"max_position_embeddings", max_position_embeddings}, {"rms_norm_eps", rms_norm_eps}, {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings}, {"attention_bias", attention_bias}, {"mlp_bias", mlp_bias},
            {"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids)},
            {"hidden_act", hidden_act}, {"architectures", {model_type == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"}}};
  j["pad_token_id"] = pad_token_id >= 0 ? json(pad_token_id) : json(nullptr);
  if (sliding_window > 0) j["sliding_window"] = sliding_window;
  if (rope_scaling.type != "default") {
    json r = {{"rope_type", rope_scaling.type}, {"factor", rope_scaling.factor}};
    if (rope_scaling.type == "llama3") {
      r["low_freq_factor"] = rope_scaling.low_freq_factor;
      r["high_freq_factor"] = rope_scaling.high_freq_factor;
    }
    if (rope_scaling.original_max_position_embeddings > 0)
      r["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    j["rope_scaling"] = r;
  }
  return j;
}

void LlamaConfig::validate() const {
  auto positive = [](const char* key, int64_t v) {
    if (v <= 0) throw Error(std::string(key) + " must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  if (head_dim <= 0 && hidden_size % num_attention_heads != 0)
    throw Error("hidden_size " + std::to_string(hidden_size) + " is not divisible by num_attention_heads " +
                std::to_string(num_attention_heads) + " (and no head_dim is given)");
  if (num_attention_heads % kv_heads() != 0)
    throw Error("num_attention_heads " + std::to_string(num_attention_heads) + " is not a multiple of num_key_value_heads " +
                std::to_string(kv_heads()));
  if (dim_per_head() % 2 != 0) throw Error("head_dim must be even for rotary embeddings, got " + std::to_string(dim_per_head()));
  if (hidden_act != "silu")
    throw Error("hidden_act: only silu (SwiGLU) is supported, got \"" + hidden_act + "\"");
  const auto& t = rope_scaling.type;
  if (t != "default" && t != "linear" && t != "dynamic" && t != "llama3")
    throw Error("rope_scaling: unsupported rope_type \"" + t + "\" (supported: default, linear, dynamic, llama3)");
  if (t != "default" && !(rope_scaling.factor > 0)) throw Error("rope_scaling: factor must be positive");
  if (t == "llama3" && rope_scaling.original_max_position_embeddings <= 0)
    throw Error("rope_scaling: llama3 needs original_max_position_embeddings");
  if (!(rms_norm_eps > 0)) throw Error("rms_norm_eps must be positive");
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t d = hidden_size, hd = dim_per_head(), q = num_attention_heads * hd, kv = kv_heads() * hd;
  const int64_t attention = d * q + 2 * d * kv + q * d + (attention_bias ? q + 2 * kv + d : 0);
  const int64_t mlp = 3 * d * intermediate_size + (mlp_bias ? 2 * intermediate_size + d : 0);
  const int64_t layer = attention + mlp + 2 * d;
  return vocab_size * d * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + d;
}

// --- layers -----------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", empty_parameter({dim}));
  if (!deferring_init()) {
    torch::NoGradGuard no_grad;
    weight.fill_(1.0);
    mark_initialized(weight);
  }
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
  return weight * h.to(dtype);
}

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim) {
  weight = register_parameter("weight", empty_parameter({num, dim}));
  if (!deferring_init()) {
    torch::NoGradGuard no_grad;
    weight.normal_(0.0, 0.02);
    mark_initialized(weight);
  }
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  auto shape = ids.sizes().vec();
  shape.push_back(weight.size(1));
  return weight.index_select(0, ids.reshape(-1)).view(shape);
}

Rope rope_frequencies(const LlamaConfig& c, int64_t seq_len) {
  const int64_t dim = c.dim_per_head();
  const auto& s = c.rope_scaling;
  double base = c.rope_theta;
  if (s.type == "dynamic") {
    // transformers' dynamic NTK: past the original length, the base grows with the sequence.
    const int64_t original = s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings : c.max_position_embeddings;
    if (seq_len > original) {
      base = base * std::pow(s.factor * static_cast<double>(seq_len) / static_cast<double>(original) - (s.factor - 1.0),
                             static_cast<double>(dim) / static_cast<double>(dim - 2));
    }
  }
  torch::Tensor inv_freq = 1.0 / torch::pow(base, torch::arange(0, dim, 2, torch::kFloat32) / static_cast<double>(dim));
  if (s.type == "linear") inv_freq = inv_freq / s.factor;
  if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    const auto wavelen = 2 * std::numbers::pi / inv_freq;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
    const auto smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return {inv_freq, 1.0};
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  auto& K = k_.at(layer);
  auto& V = v_.at(layer);
  int64_t& length = length_.at(layer);
  const int64_t t = k.size(2);
  if (!K.defined() || length + t > K.size(2)) {
    const int64_t capacity = std::max<int64_t>(2 * (length + t), 16);
    auto grow = [&](const torch::Tensor& old, const torch::Tensor& like) {
      auto fresh = torch::empty({like.size(0), like.size(1), capacity, like.size(3)}, like.options());
      if (old.defined() && length > 0) fresh.narrow(2, 0, length).copy_(old.narrow(2, 0, length));
      return fresh;
    };
    K = grow(K, k);
    V = grow(V, v);
  }
  K.narrow(2, length, t).copy_(k);
  V.narrow(2, length, t).copy_(v);
  length += t;
  return {K.narrow(2, 0, length), V.narrow(2, 0, length)};
}

void KVCache::select_rows(const torch::Tensor& rows) {
  for (size_t i = 0; i < k_.size(); ++i) {
    if (!k_[i].defined()) continue;
    k_[i] = k_[i].index_select(0, rows.to(k_[i].device()));
    v_[i] = v_[i].index_select(0, rows.to(v_[i].device()));
  }
}

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// [B, H_kv, S, D] -> [B, H_kv * groups, S, D], each KV head repeated for its query heads (as repeat_kv).
torch::Tensor repeat_kv(const torch::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const auto b = x.size(0), h = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, h, groups, s, d}).reshape({b, h * groups, s, d});
}

}  // namespace

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.kv_heads()), head_dim_(c.dim_per_head()) {
  const int64_t d = c.hidden_size;
  q_proj = register_module("q_proj", Linear(LinearOptions(d, heads_ * head_dim_).bias(c.attention_bias)));
  k_proj = register_module("k_proj", Linear(LinearOptions(d, kv_heads_ * head_dim_).bias(c.attention_bias)));
  v_proj = register_module("v_proj", Linear(LinearOptions(d, kv_heads_ * head_dim_).bias(c.attention_bias)));
  o_proj = register_module("o_proj", Linear(LinearOptions(heads_ * head_dim_, d).bias(c.attention_bias)));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                          const torch::Tensor& mask, KVCache* cache, int64_t layer) {
  const int64_t b = x.size(0), t = x.size(1);
  auto q = q_proj(x).view({b, t, -1, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({b, t, -1, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({b, t, -1, head_dim_}).transpose(1, 2);
  const auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  q = q * c + rotate_half(q) * s;
  k = k * c + rotate_half(k) * s;
  const bool had_past = cache && cache->length(layer) > 0;
  if (cache) std::tie(k, v) = cache->append(layer, k, v);
  const int64_t groups = heads_ / kv_heads_;
  k = repeat_kv(k, groups);
  v = repeat_kv(v, groups);
  torch::Tensor out;
  if (mask.defined()) {
    out = at::scaled_dot_product_attention(q, k, v, mask);
  } else {
    // No padding: plain causal attention over T, or (decoding one token after a prefix) everything.
    const bool causal = !had_past && t > 1;
    TORCH_CHECK(!had_past || t == 1, "llama attention: several new tokens after a cache need a mask");
    out = at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, causal);
  }
  return o_proj(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
}

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c) {
  const auto o = [&](int64_t in, int64_t out) { return LinearOptions(in, out).bias(c.mlp_bias); };
  gate_proj = register_module("gate_proj", Linear(o(c.hidden_size, c.intermediate_size)));
  up_proj = register_module("up_proj", Linear(o(c.hidden_size, c.intermediate_size)));
  down_proj = register_module("down_proj", Linear(o(c.intermediate_size, c.hidden_size)));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c, int64_t index_) : index(index_) {
  self_attn = register_module("self_attn", LlamaAttention(c));
  mlp = register_module("mlp", LlamaMLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                             const torch::Tensor& mask, KVCache* cache) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache, index);
  return h + mlp(post_attention_layernorm(h));
}

torch::Tensor causal_mask(const torch::Tensor& attention_mask, int64_t batch, int64_t t, int64_t past, int64_t window,
                          const torch::Device& device) {
  const int64_t s = past + t;
  const bool padded = attention_mask.defined() && !attention_mask.all().item<bool>();
  const bool windowed = window > 0 && s > window;
  if (!padded && !windowed && (past == 0 || t == 1)) return {};
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  const auto qi = (torch::arange(t, opts) + past).unsqueeze(1);  // [T, 1] cache index of each query
  const auto kj = torch::arange(s, opts).unsqueeze(0);           // [1, S]
  auto allowed = kj <= qi;
  if (windowed) allowed = allowed.logical_and(qi - kj < window);
  auto mask = allowed.unsqueeze(0).unsqueeze(0).expand({batch, 1, t, s});
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch && attention_mask.size(1) == s,
                "attention_mask must be [B, past + T] = [", batch, ", ", s, "], got ", attention_mask.sizes());
    mask = mask.logical_and(attention_mask.to(device).to(torch::kBool).view({batch, 1, 1, s}));
  }
  // A query at padding sees no real key: let it see itself (its output is never used).
  const auto diagonal = (kj == qi).view({1, 1, t, s});
  const auto empty = mask.any(-1, true).logical_not();
  return mask.logical_or(diagonal.logical_and(empty));
}

torch::Tensor positions_from_mask(const torch::Tensor& attention_mask, int64_t t) {
  auto m = attention_mask.to(torch::kLong);
  auto pos = m.cumsum(-1) - 1;
  pos.masked_fill_(m == 0, 1);
  return pos.narrow(1, pos.size(1) - t, t);
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) : config_(c) {
  c.validate();
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layer_list_.push_back(LlamaDecoderLayer(c, i));
    layers->push_back(layer_list_.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaModelImpl::forward(const LlamaInputs& in) {
  if (in.input_ids.defined() == in.inputs_embeds.defined())
    throw Error("llama: give exactly one of input_ids and inputs_embeds");
  torch::Tensor h = in.input_ids.defined() ? embed_tokens(in.input_ids) : in.inputs_embeds;
  const int64_t b = h.size(0), t = h.size(1);
  const int64_t past = in.cache ? in.cache->length() : 0;
  torch::Tensor positions = in.position_ids;
  if (!positions.defined()) positions = (torch::arange(t, torch::TensorOptions().dtype(torch::kLong)) + past).unsqueeze(0).expand({b, t});
  positions = positions.to(h.device());
  Rope rope = config_.rope_scaling.type == "dynamic" ? rope_frequencies(config_, positions.max().item<int64_t>() + 1)
                                                     : rope_frequencies(config_);
  const auto freqs = positions.unsqueeze(-1).to(torch::kFloat32) * rope.inv_freq.to(h.device()).view({1, 1, -1});
  const auto emb = torch::cat({freqs, freqs}, -1);
  const auto cos = (emb.cos() * rope.attention_scaling).to(h.scalar_type());
  const auto sin = (emb.sin() * rope.attention_scaling).to(h.scalar_type());
  const auto mask = causal_mask(in.attention_mask, b, t, past, config_.sliding_window, h.device());

  const bool checkpoint = gradient_checkpointing && is_training() && torch::GradMode::is_enabled() && !in.cache;
  for (auto& layer : layer_list_) {
    if (checkpoint) h = checkpointed_layer(layer, h, cos, sin, mask);
    else h = layer->forward(h, cos, sin, mask, in.cache);
  }
  return norm(h);
}

// --- the causal LM ------------------------------------------------------------------------------------

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& c) : config_(c) {
  model = register_module("model", LlamaModel(c));
  if (!c.tie_word_embeddings) lm_head = register_module("lm_head", Linear(LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
}

torch::Tensor LlamaForCausalLM::head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor LlamaForCausalLM::logits(const torch::Tensor& hidden) {
  torch::Tensor out = lm_head ? lm_head(hidden) : torch::nn::functional::linear(hidden, model->embed_tokens->weight);
  return out.to(torch::kFloat32);
}

Outputs LlamaForCausalLM::forward(const data::Batch& batch) {
  LlamaInputs in;
  in.input_ids = batch.fields.at("input_ids");
  if (batch.fields.contains("attention_mask")) in.attention_mask = batch.fields.at("attention_mask");
  return Outputs{{"logits", forward_logits(in)}};
}

losses::LossResult LlamaForCausalLM::forward_losses(const data::Batch& batch, Outputs& outputs) {
  LlamaInputs in;
  in.input_ids = batch.fields.at("input_ids");
  if (batch.fields.contains("attention_mask")) in.attention_mask = batch.fields.at("attention_mask");
  const auto& labels = batch.fields.at("labels");
  const auto hidden = hidden_states(in);
  const int64_t b = hidden.size(0), t = hidden.size(1);
  // Token i predicts label i + 1.
  const auto h = hidden.narrow(1, 0, t - 1).reshape({-1, hidden.size(2)});
  const auto targets = labels.narrow(1, 1, t - 1).reshape({-1}).to(hidden.device());
  const bool adapted_head = lm_head && !lm_head->adapters().empty();
  const auto per_token = adapted_head ? naive_token_losses(lm_head(h).to(torch::kFloat32), targets)
                                      : chunked_token_losses(h, head_weight(), targets, loss_chunk_tokens);
  const auto valid = (targets != data::kIgnoreIndex).to(torch::kFloat32);
  losses::LossResult r;
  r.total = per_token.sum() / valid.sum().clamp_min(1.0);
  r.per_sample = per_token.view({b, t - 1}).sum(1) / valid.view({b, t - 1}).sum(1).clamp_min(1.0);
  r.parts = TensorDict{{"lm", r.total.detach()}};
  outputs["tokens"] = valid.sum().detach();
  return r;
}

std::shared_ptr<LlamaForCausalLM> from_pretrained(const std::filesystem::path& dir, const PretrainedOptions& options) {
  const auto config = LlamaConfig::from_file(dir);
  std::shared_ptr<LlamaForCausalLM> model;
  {
    ConstructionScope scope(options.dtype, /*defer_init=*/true, options.device);
    model = std::make_shared<LlamaForCausalLM>(config);
  }
  std::string ignore = "['rotary_emb\\.inv_freq$'";
  if (config.tie_word_embeddings) ignore += ", '^lm_head\\.weight$'";
  ignore += "]";
  std::string path = dir.string();
  for (size_t i = 0; (i = path.find('\'', i)) != std::string::npos; i += 2) path.insert(i, "'");  // YAML '' escape
  init_weights(*model, Config::parse("init_weights:\n  - {path: '" + path + "', ignore: " + ignore + "}", "from_pretrained").at("init_weights"));
  model->eval();
  return model;
}

namespace {

FACET_REGISTER(model_registry(), "llama",
               "LLaMA-family causal LM (Llama-2/3, Vicuna, Mistral) in transformers' names; config: config.json path "
               "and/or its keys inline; loss: chunked next-token cross-entropy of `labels`",
               [](const Config& c) -> std::shared_ptr<Model> {
                 auto m = std::make_shared<LlamaForCausalLM>(c);
                 m->loss_chunk_tokens = c.get_in_range<int64_t>("loss_chunk_tokens", 1024, Range::at_least(1));
                 m->model->gradient_checkpointing = c.get<bool>("gradient_checkpointing", false);
                 return m;
               });

}  // namespace
}  // namespace facet::models::llm
