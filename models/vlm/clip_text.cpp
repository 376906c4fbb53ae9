#include "models/vlm/clip_text.h"

#include "core/error.h"

namespace facet::models::vlm {

ClipTextOptions ClipTextOptions::sd15() { return {}; }

ClipTextOptions ClipTextOptions::from(const Config& c) {
  const auto preset = c.get<std::string>("preset", "sd15");
  if (preset != "sd15") fail("{}: {}: unknown CLIP text preset '{}' (sd15)", c.where("preset"), c.full_key("preset"), preset);
  ClipTextOptions o = sd15();
  o.vocab_size = c.get_in_range<int64_t>("vocab_size", o.vocab_size, Range::at_least(1));
  o.max_position_embeddings = c.get_in_range<int64_t>("max_position_embeddings", o.max_position_embeddings, Range::at_least(1));
  o.hidden_size = c.get_in_range<int64_t>("hidden_size", o.hidden_size, Range::at_least(1));
  o.intermediate_size = c.get_in_range<int64_t>("intermediate_size", o.intermediate_size, Range::at_least(1));
  o.num_hidden_layers = c.get_in_range<int64_t>("num_hidden_layers", o.num_hidden_layers, Range::at_least(1));
  o.num_attention_heads = c.get_in_range<int64_t>("num_attention_heads", o.num_attention_heads, Range::at_least(1));
  o.layer_norm_eps = c.get_in_range<double>("layer_norm_eps", o.layer_norm_eps, Range::above(0));
  o.hidden_act = c.get<std::string>("hidden_act", o.hidden_act);
  o.eos_token_id = c.get<int64_t>("eos_token_id", o.eos_token_id);
  o.validate(c.where() + ": " + (c.prefix().empty() ? std::string("text_encoder") : c.prefix()));
  return o;
}

void ClipTextOptions::validate(const std::string& where) const {
  if (hidden_size % num_attention_heads != 0)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", where, hidden_size, num_attention_heads);
  if (hidden_act != "quick_gelu" && hidden_act != "gelu") fail("{}: hidden_act must be quick_gelu or gelu, got '{}'", where, hidden_act);
}

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextOptions& o) {
  // transformers' CLIP init: N(0, 0.02) for both tables.
  token_embedding = register_module("token_embedding", ClipWeight(std::vector<int64_t>{o.vocab_size, o.hidden_size}, 0.02));
  position_embedding =
      register_module("position_embedding", ClipWeight(std::vector<int64_t>{o.max_position_embeddings, o.hidden_size}, 0.02));
}

torch::Tensor ClipTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  return torch::embedding(token_embedding->weight, input_ids) + position_embedding->weight.slice(0, 0, input_ids.size(1)).unsqueeze(0);
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextOptions& o) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(o));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_hidden_layers; ++i)
    layers->push_back(ClipEncoderLayer(o.hidden_size, o.num_attention_heads, o.intermediate_size, o.layer_norm_eps, o.hidden_act, true));
  final_layer_norm = register_module("final_layer_norm", ClipLayerNorm(o.hidden_size, o.layer_norm_eps));
}

ClipTextModelImpl::ClipTextModelImpl(ClipTextOptions options) : options_(std::move(options)) {
  options_.validate("text_encoder");
  text_model = register_module("text_model", ClipTextTransformer(options_));
}

namespace {

void check_ids(const torch::Tensor& ids, const ClipTextOptions& o) {
  if (ids.dim() != 2 || ids.size(1) < 1 || ids.size(1) > o.max_position_embeddings)
    fail("CLIP text: expected input_ids [B, L] with 1 <= L <= {}, got {}", o.max_position_embeddings, ids.sizes());
}

}  // namespace

torch::Tensor ClipTextModelImpl::word_embeddings(const torch::Tensor& input_ids) {
  check_ids(input_ids, options_);
  return torch::embedding(text_model->embeddings->token_embedding->weight, input_ids);
}

torch::Tensor ClipTextModelImpl::run_layers(torch::Tensor h, int64_t index) {
  const int64_t last = options_.num_hidden_layers;
  if (index < 0) index += last + 1;
  if (index < 0 || index > last) fail("CLIP text: hidden state {} does not exist (0..{})", index, last);
  for (int64_t i = 0; i < index; ++i) h = text_model->layers[static_cast<size_t>(i)]->as<ClipEncoderLayer>()->forward(h);
  return h;
}

torch::Tensor ClipTextModelImpl::hidden_state(const torch::Tensor& input_ids, int64_t index) {
  check_ids(input_ids, options_);
  return run_layers(text_model->embeddings(input_ids), index);
}

torch::Tensor ClipTextModelImpl::encode_words(const torch::Tensor& words, int64_t index) {
  if (words.dim() != 3 || words.size(1) > options_.max_position_embeddings || words.size(2) != options_.hidden_size)
    fail("CLIP text: expected word embeddings [B, L <= {}, {}], got {}", options_.max_position_embeddings, options_.hidden_size,
         words.sizes());
  const auto& positions = text_model->embeddings->position_embedding->weight;
  return text_model->final_layer_norm(run_layers(words + positions.slice(0, 0, words.size(1)).unsqueeze(0), index));
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids) {
  ClipTextOutput out;
  out.last_hidden_state = text_model->final_layer_norm(hidden_state(input_ids, options_.num_hidden_layers));
  // transformers: eos_token_id 2 (the original CLIP configs) pools at argmax(ids), else at the first eos.
  const torch::Tensor position = options_.eos_token_id == 2 ? input_ids.argmax(-1)
                                                            : (input_ids == options_.eos_token_id).to(torch::kInt).argmax(-1);
  out.pooler_output = out.last_hidden_state.index({torch::arange(input_ids.size(0), input_ids.options()), position});
  return out;
}

}  // namespace facet::models::vlm
