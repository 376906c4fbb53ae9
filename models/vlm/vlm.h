// What the vision-language systems share (LLaVA-1.5 / EmoLA / Face-MLLM, LiteGPT): visual tokens in
// the language model's embedding space spliced into the text at the image placeholder, the next-token
// loss on the answer, and generation that starts from the spliced embeddings (LLaVA's
// prepare_inputs_labels_for_multimodal and transformers' LlavaForConditionalGeneration do the same).
//
// The training batch (agreed with the instruction datasets, data/instruct):
//   input_ids      [B, T] int64, ONE placeholder id (image_token_id) per image where its tokens go
//   labels         [B, T] int64, -100 where not supervised (prompt, padding)
//   attention_mask [B, T] 1 = real token, 0 = padding
//   image          [B, 3, H, W] float, normalised as the tower expects (clip_preprocess.h)
//   landmarks      [B, 212] float (EmoLA only)
// Each placeholder is replaced by the K visual tokens of the next image (images taken in batch order),
// their labels -100 and mask 1; rows that end up shorter are padded (right for training, left for
// generation). Image i of the batch belongs to the i-th placeholder, so a row without a placeholder
// (text only) must come with no image.
#pragma once

#include "models/layers/linear.h"
#include "models/llm/generate.h"
#include "models/llm/llama.h"
#include "models/model.h"
#include "core/config.h"
#include "data/text/tokenizer.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace facet::models::vlm {

// LLaVA's `mlp2x_gelu` (Linear -> GELU -> Linear; transformers' multi_modal_projector.linear_1/2) or,
// with hidden = 0, one Linear (`linear`, registered as linear_1).
class MlpProjectorImpl : public torch::nn::Module {
 public:
  MlpProjectorImpl(int64_t in, int64_t hidden, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  // Parameters of a projector of this shape (for counts at 7B without building it).
  static int64_t count(int64_t in, int64_t hidden, int64_t out, bool bias = true);
  Linear linear_1{nullptr}, linear_2{nullptr};  // linear_2 null for a single Linear
};
TORCH_MODULE(MlpProjector);

// What the models generate in evaluation (`model.generation`): with a tokenizer (the data part's
// file), forward in eval mode answers each row's prompt (the batch's prompt_ids, else the part of
// input_ids before the answer) and returns the answers as outputs.text["generated"] for the text
// metrics, the pictures and the predictions; without one, forward returns logits as in training.
//   model.generation: {tokenizer: <path>, max_new_tokens: 64, do_sample: false, temperature, top_k, top_p,
//                      repetition_penalty, seed, stop_strings: [...], pad: unk|eos|bos|<id>, enabled: true}
// The stop token is the tokenizer's EOS; greedy decoding by default (LLaVA's and LiteGPT's evaluation).
struct EvalGeneration {
  bool enabled = false;
  llm::GenerationOptions options;
  std::shared_ptr<const data::text::Tokenizer> tokenizer;
  static EvalGeneration from(const Config& model_node);
};

struct SplicedInputs {
  torch::Tensor embeds;          // [B, L, H]
  torch::Tensor attention_mask;  // [B, L] int64
  torch::Tensor labels;          // [B, L] (undefined when no labels were given)
  torch::Tensor position_ids;    // [B, L]: counted over real tokens (left padding), else undefined
};

class VisionLanguageModel : public Model, public ComputesLosses {
 public:
  // The visual tokens of the batch's images, in the language model's embedding space: [images, K, H].
  virtual torch::Tensor visual_tokens(const data::Batch& batch) = 0;

  // The placeholders of input_ids replaced by visual tokens; `left_pad` pads shorter rows on the left
  // (generation), else on the right.
  SplicedInputs splice(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, const torch::Tensor& labels,
                       const torch::Tensor& visual, bool left_pad) const;

  // Training (or no generation configured): "logits" [B, L, V] (fp32) over the spliced sequence,
  // "attention_mask" [B, L]. Eval mode with generation: text["generated"] (B answers) and
  // "generated_tokens" [B] (new tokens, the stop token included), no logits.
  Outputs forward(const data::Batch& batch) override;

  // Reads `model.generation` (EvalGeneration); the registered builders call it.
  void configure_generation(const Config& model_node) { generation_ = EvalGeneration::from(model_node); }
  void set_generation(EvalGeneration g) { generation_ = std::move(g); }
  const EvalGeneration& generation() const { return generation_; }
  // The answers of an evaluation batch (prompt_ids when the batch has them, else answer()'s prompts).
  std::vector<llm::Generation> generate_for(const data::Batch& batch);
  // Mean next-token cross-entropy over the supervised answer tokens ("lm" part; per_sample per row),
  // chunked as llm/lm_loss.h does; outputs["tokens"] = supervised tokens.
  losses::LossResult forward_losses(const data::Batch& batch, Outputs& outputs) override;

  // Answers for prompts (token ids, each with one placeholder) about the batch's images (`images`:
  // the fields visual_tokens reads, one image per prompt in order): the prompts are spliced and
  // left-padded, the decoder runs on the embeddings once, then token by token with its KV cache,
  // with llm::generate's options, logits processors and stop rules.
  std::vector<llm::Generation> generate(const data::Batch& images, const std::vector<std::vector<int64_t>>& prompts,
                                        const llm::GenerationOptions& options, const llm::Decoder& decode = {});

  // Answers for an evaluation batch laid out as for training: each row's prompt is its real tokens
  // (attention_mask 1) before the first supervised label (labels != -100; all real tokens without
  // labels), so the reference answer is never shown; the row's image(s) as in training.
  std::vector<llm::Generation> answer(const data::Batch& batch, const llm::GenerationOptions& options,
                                      const llm::Decoder& decode = {});

  // The questions, generated answers and references (train/visualizers.cpp).
  std::string default_visualizer() const override { return "image_text"; }

  llm::LlamaForCausalLM& language_model() { return *language_model_; }
  int64_t image_token_id() const { return image_token_id_; }

 protected:
  // Registers the decoder as `language_model` (its names: language_model.model.layers.N..., language_model.lm_head).
  void set_language_model(const llm::LlamaConfig& config);
  int64_t image_token_id_ = -200;
  int64_t loss_chunk_tokens_ = 1024;
  std::shared_ptr<llm::LlamaForCausalLM> language_model_;
  EvalGeneration generation_;

 private:
  SplicedInputs spliced_batch(const data::Batch& batch);
};

// Freezes a module's parameters (requires_grad false) — the vision towers, as LLaVA and LiteGPT train.
void freeze(torch::nn::Module& module);
bool any_trainable(const torch::nn::Module& module);

}  // namespace facet::models::vlm
