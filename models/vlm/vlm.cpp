#include "models/vlm/vlm.h"

#include "core/error.h"
#include "models/llm/lm_loss.h"

#include <algorithm>

namespace facet::models::vlm {

MlpProjectorImpl::MlpProjectorImpl(int64_t in, int64_t hidden, int64_t out, bool bias) {
  if (hidden > 0) {
    linear_1 = register_module("linear_1", Linear(LinearOptions(in, hidden).bias(bias)));
    linear_2 = register_module("linear_2", Linear(LinearOptions(hidden, out).bias(bias)));
  } else {
    linear_1 = register_module("linear_1", Linear(LinearOptions(in, out).bias(bias)));
  }
}

torch::Tensor MlpProjectorImpl::forward(const torch::Tensor& x) {
  auto h = linear_1(x.to(linear_1->weight.dtype()));
  return linear_2 ? linear_2(torch::gelu(h)) : h;  // exact GELU (LLaVA's nn.GELU, transformers' "gelu")
}

int64_t MlpProjectorImpl::count(int64_t in, int64_t hidden, int64_t out, bool bias) {
  if (hidden <= 0) return in * out + (bias ? out : 0);
  return in * hidden + hidden * out + (bias ? hidden + out : 0);
}

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

bool any_trainable(const torch::nn::Module& module) {
  for (const auto& p : module.parameters())
    if (p.requires_grad()) return true;
  return false;
}

void VisionLanguageModel::set_language_model(const llm::LlamaConfig& config) {
  language_model_ = std::make_shared<llm::LlamaForCausalLM>(config);
  register_module("language_model", language_model_);
}

SplicedInputs VisionLanguageModel::splice(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                          const torch::Tensor& labels, const torch::Tensor& visual, bool left_pad) const {
  if (input_ids.dim() != 2) fail("vision-language model: input_ids must be [B, T], got {}", input_ids.sizes());
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const auto device = language_model_->head_weight().device();
  auto& embed = language_model_->model->embed_tokens;
  const auto ids = input_ids.to(device);
  const auto is_image = ids == image_token_id_;
  const auto text = embed(ids.masked_fill(is_image, 0));  // placeholder rows are replaced below
  const auto mask = attention_mask.defined() ? attention_mask.to(device).to(torch::kLong) : torch::ones({b, t}, ids.options());
  if (mask.sizes() != input_ids.sizes()) fail("vision-language model: attention_mask {} differs from input_ids {}", mask.sizes(), input_ids.sizes());
  if (labels.defined() && labels.sizes() != input_ids.sizes())
    fail("vision-language model: labels {} differ from input_ids {}", labels.sizes(), input_ids.sizes());
  const auto lab = labels.defined() ? labels.to(device) : torch::Tensor();
  const auto vis = visual.defined() ? visual.to(device, text.scalar_type()) : torch::Tensor();
  const int64_t images = vis.defined() ? vis.size(0) : 0;
  const int64_t k = vis.defined() ? vis.size(1) : 0;
  const auto where = is_image.cpu();

  std::vector<torch::Tensor> rows_e, rows_m, rows_l;
  int64_t next_image = 0;
  for (int64_t r = 0; r < b; ++r) {
    const auto positions = where[r].nonzero().view({-1});
    const auto* pos = positions.data_ptr<int64_t>();
    std::vector<torch::Tensor> e, m, l;  // segments of this row
    int64_t start = 0;
    for (int64_t i = 0; i <= positions.size(0); ++i) {
      const int64_t end = i < positions.size(0) ? pos[i] : t;
      if (end > start) {
        e.push_back(text[r].slice(0, start, end));
        m.push_back(mask[r].slice(0, start, end));
        if (lab.defined()) l.push_back(lab[r].slice(0, start, end));
      }
      if (i == positions.size(0)) break;
      if (next_image >= images)
        fail("vision-language model: the batch holds {} image(s) but more placeholders (id {}); row {} has one at {}", images,
             image_token_id_, r, end);
      e.push_back(vis[next_image++]);
      m.push_back(torch::ones({k}, mask.options()));
      if (lab.defined()) l.push_back(torch::full({k}, data::kIgnoreIndex, lab.options()));
      start = end + 1;
    }
    rows_e.push_back(torch::cat(e));
    rows_m.push_back(torch::cat(m));
    if (lab.defined()) rows_l.push_back(torch::cat(l));
  }
  if (next_image != images)
    fail("vision-language model: the batch holds {} image(s) but input_ids have {} placeholder(s) (id {})", images, next_image,
         image_token_id_);
  int64_t longest = 0;
  for (const auto& e : rows_e) longest = std::max(longest, e.size(0));
  auto pad = [&](const torch::Tensor& row, double value) {
    const int64_t missing = longest - row.size(0);
    if (missing == 0) return row;
    std::vector<int64_t> shape = row.sizes().vec();
    shape[0] = missing;
    const auto filler = torch::full(shape, value, row.options());
    return left_pad ? torch::cat({filler, row}) : torch::cat({row, filler});
  };
  SplicedInputs out;
  std::vector<torch::Tensor> e, m, l;
  for (int64_t r = 0; r < b; ++r) {
    e.push_back(pad(rows_e[r], 0.0));
    m.push_back(pad(rows_m[r], 0.0));
    if (lab.defined()) l.push_back(pad(rows_l[r], static_cast<double>(data::kIgnoreIndex)));
  }
  out.embeds = torch::stack(e);
  out.attention_mask = torch::stack(m);
  if (lab.defined()) out.labels = torch::stack(l);
  if (left_pad && !out.attention_mask.all().item<bool>()) out.position_ids = llm::positions_from_mask(out.attention_mask, longest);
  return out;
}

SplicedInputs VisionLanguageModel::spliced_batch(const data::Batch& batch) {
  const auto& f = batch.fields;
  if (!f.contains("input_ids")) fail("vision-language model: the batch has no input_ids");
  const torch::Tensor mask = f.contains("attention_mask") ? f.at("attention_mask") : torch::Tensor();
  const torch::Tensor labels = f.contains("labels") ? f.at("labels") : torch::Tensor();
  const torch::Tensor visual = f.contains("image") ? visual_tokens(batch) : torch::Tensor();
  return splice(f.at("input_ids"), mask, labels, visual, /*left_pad=*/false);
}

EvalGeneration EvalGeneration::from(const Config& model_node) {
  EvalGeneration g;
  if (!model_node.has("generation")) return g;
  const Config c = model_node.at("generation");
  auto& o = g.options;
  o.max_new_tokens = c.get_in_range<int64_t>("max_new_tokens", o.max_new_tokens, Range::at_least(1));
  o.do_sample = c.get<bool>("do_sample", o.do_sample);
  o.temperature = c.get_in_range<double>("temperature", o.temperature, Range::above(0));
  o.top_k = c.get_in_range<int64_t>("top_k", o.top_k, Range::at_least(0));
  o.top_p = c.get_in_range<double>("top_p", o.top_p, Range::closed(0, 1));
  o.repetition_penalty = c.get_in_range<double>("repetition_penalty", o.repetition_penalty, Range::above(0));
  o.seed = static_cast<uint64_t>(c.get_in_range<int64_t>("seed", 0, Range::at_least(0)));
  o.stop_strings = c.get<std::vector<std::string>>("stop_strings", {});
  if (c.has("tokenizer")) {
    const auto path = c.get<std::string>("tokenizer");
    try {
      auto tok = std::make_shared<data::text::Tokenizer>(data::text::Tokenizer::load(path));
      if (c.has("pad")) tok->set_pad(c.get<std::string>("pad"));
      o.eos_token_ids = {tok->eos_id};
      o.pad_token_id = tok->pad_id;
      g.tokenizer = std::move(tok);
    } catch (const std::exception& e) {
      fail("{}: model.generation.tokenizer: {}", c.where("tokenizer"), e.what());
    }
  }
  g.enabled = c.get<bool>("enabled", g.tokenizer != nullptr);
  if (g.enabled && !g.tokenizer)
    fail("{}: model.generation needs `tokenizer` (the data part's tokenizer file) to turn answers into text", c.where());
  return g;
}

std::vector<llm::Generation> VisionLanguageModel::generate_for(const data::Batch& batch) {
  llm::Decoder decode;
  if (generation_.tokenizer) decode = [tok = generation_.tokenizer](const std::vector<int64_t>& ids) { return tok->decode(ids); };
  const auto& f = batch.fields;
  if (!f.contains("prompt_ids")) return answer(batch, generation_.options, decode);
  // The dataset's prompts for the last answer, left-padded (prompt_attention_mask 0 on the padding).
  const auto ids = f.at("prompt_ids").to(torch::kCPU, torch::kLong).contiguous();
  const auto mask = f.contains("prompt_attention_mask") ? f.at("prompt_attention_mask").to(torch::kCPU, torch::kLong).contiguous()
                                                         : torch::ones_like(ids);
  std::vector<std::vector<int64_t>> prompts;
  const auto* id = ids.data_ptr<int64_t>();
  const auto* m = mask.data_ptr<int64_t>();
  for (int64_t r = 0; r < ids.size(0); ++r) {
    std::vector<int64_t> p;
    for (int64_t t = 0; t < ids.size(1); ++t)
      if (m[r * ids.size(1) + t] != 0) p.push_back(id[r * ids.size(1) + t]);
    if (p.empty()) fail("vision-language model: row {} of the batch has an empty prompt_ids", r);
    prompts.push_back(std::move(p));
  }
  return generate(batch, prompts, generation_.options, decode);
}

Outputs VisionLanguageModel::forward(const data::Batch& batch) {
  if (!is_training() && generation_.enabled) {
    const auto answers = generate_for(batch);
    Outputs out;
    std::vector<std::string> texts;
    std::vector<int64_t> counts;
    for (const auto& g : answers) {
      texts.push_back(g.text);
      counts.push_back(static_cast<int64_t>(g.tokens.size()));
    }
    out.text["generated"] = std::move(texts);
    out["generated_tokens"] = torch::tensor(counts, torch::kLong);
    return out;
  }
  const auto s = spliced_batch(batch);
  llm::LlamaInputs in;
  in.inputs_embeds = s.embeds;
  in.attention_mask = s.attention_mask;
  return Outputs{{"logits", language_model_->forward_logits(in)}, {"attention_mask", s.attention_mask}};
}

losses::LossResult VisionLanguageModel::forward_losses(const data::Batch& batch, Outputs& outputs) {
  if (!batch.fields.contains("labels")) fail("vision-language model: training needs `labels` in the batch");
  const auto s = spliced_batch(batch);
  llm::LlamaInputs in;
  in.inputs_embeds = s.embeds;
  in.attention_mask = s.attention_mask;
  const auto hidden = language_model_->hidden_states(in);
  const int64_t b = hidden.size(0), t = hidden.size(1);
  // Token i predicts label i + 1.
  const auto h = hidden.narrow(1, 0, t - 1).reshape({-1, hidden.size(2)});
  const auto targets = s.labels.narrow(1, 1, t - 1).reshape({-1});
  auto& lm = *language_model_;
  const bool adapted_head = lm.lm_head && !lm.lm_head->adapters().empty();
  // Up to one chunk of tokens the plain loss holds the same [tokens, vocab] logits the chunked one
  // would, without recomputing them in backward (a small model's step is dominated by the head).
  torch::Tensor per_token;
  if (adapted_head) per_token = llm::naive_token_losses(lm.lm_head(h).to(torch::kFloat32), targets);
  else if (h.size(0) <= loss_chunk_tokens_) per_token = llm::naive_token_losses(torch::matmul(h, lm.head_weight().t()).to(torch::kFloat32), targets);
  else per_token = llm::chunked_token_losses(h, lm.head_weight(), targets, loss_chunk_tokens_);
  const auto valid = (targets != data::kIgnoreIndex).to(torch::kFloat32);
  losses::LossResult r;
  r.total = per_token.sum() / valid.sum().clamp_min(1.0);
  r.per_sample = per_token.view({b, t - 1}).sum(1) / valid.view({b, t - 1}).sum(1).clamp_min(1.0);
  r.parts = TensorDict{{"lm", r.total.detach()}};
  outputs["tokens"] = valid.sum().detach();
  return r;
}

std::vector<llm::Generation> VisionLanguageModel::generate(const data::Batch& images, const std::vector<std::vector<int64_t>>& prompts,
                                                           const llm::GenerationOptions& o, const llm::Decoder& decode) {
  if (prompts.empty()) return {};
  if (o.max_new_tokens < 0) fail("generation: max_new_tokens must be >= 0");
  if (!o.stop_strings.empty() && !decode) fail("generation: stop strings need a decoder (a tokenizer)");
  const auto batch = static_cast<int64_t>(prompts.size());
  int64_t longest = 0;
  for (const auto& p : prompts) {
    if (p.empty()) fail("generation: a prompt is empty");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  }
  auto ids = torch::full({batch, longest}, o.pad_token_id, torch::kLong);
  auto mask = torch::zeros({batch, longest}, torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const auto n = static_cast<int64_t>(prompts[b].size());
    ids[b].narrow(0, longest - n, n).copy_(torch::tensor(prompts[b], torch::kLong));
    mask[b].narrow(0, longest - n, n).fill_(1);
  }
  torch::NoGradGuard no_grad;
  const bool was_training = is_training();
  eval();
  const torch::Tensor visual = images.fields.contains("image") ? visual_tokens(images) : torch::Tensor();
  const auto s = splice(ids, mask, {}, visual, /*left_pad=*/true);
  llm::Prefill prefill;
  prefill.inputs_embeds = s.embeds;
  prefill.attention_mask = s.attention_mask;
  // The repetition penalty sees the prompt's text tokens (placeholders as the pad id).
  prefill.seen_ids = ids.masked_fill(ids == image_token_id_, o.pad_token_id);
  auto out = llm::generate_from(*language_model_, prefill, o, decode);
  if (was_training) train();
  return out;
}

std::vector<llm::Generation> VisionLanguageModel::answer(const data::Batch& batch, const llm::GenerationOptions& options,
                                                         const llm::Decoder& decode) {
  const auto& f = batch.fields;
  if (!f.contains("input_ids")) fail("vision-language model: the batch has no input_ids");
  const auto ids = f.at("input_ids").to(torch::kCPU, torch::kLong).contiguous();
  const auto mask = f.contains("attention_mask") ? f.at("attention_mask").to(torch::kCPU, torch::kLong).contiguous() : torch::ones_like(ids);
  const auto labels = f.contains("labels") ? f.at("labels").to(torch::kCPU, torch::kLong).contiguous() : torch::Tensor();
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t r = 0; r < ids.size(0); ++r) {
    std::vector<int64_t> p;
    for (int64_t t = 0; t < ids.size(1); ++t) {
      if (labels.defined() && labels[r][t].item<int64_t>() != data::kIgnoreIndex) break;  // the answer starts
      if (mask[r][t].item<int64_t>() != 0) p.push_back(ids[r][t].item<int64_t>());
    }
    if (p.empty()) fail("vision-language model: row {} of the batch has no prompt before its answer", r);
    prompts.push_back(std::move(p));
  }
  return generate(batch, prompts, options, decode);
}

}  // namespace facet::models::vlm
