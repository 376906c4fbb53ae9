// Q-Face: one model for several face-analysis tasks at once (Sun, He, Shan, Han, Chen, "Task-adaptive
// Q-Face", arXiv 2405.09059): a masked-image-modelling ViT, multi-stage feature fusion (MFF) of
// several of its blocks, and a task-adaptive decoder whose learnable queries cross-attend to the
// fused tokens, one group of queries per task (expression, AUs, attributes, age, head pose).
//
// Taken from the sources (face.md §3.1 abstract, §3.2 third-party summary): one unified model for
// the five tasks; features fused from multiple layers of a large pre-trained model; a module in
// which a set of query vectors cross-attends to the fused multi-stage features; the backbone is a
// ViT pre-trained by masked image modelling; learnable label queries in a query-driven decoder.
// Reconstructed (the method section is not public; face.md §3.3), each choice an option:
//   - backbone: ViT-B/16 at 224 px in the MAE layout (models/backbones/vit.h), as the same group's
//     EMMA uses an MAE ViT-B/16 pre-trained on CelebA (face.md §4.1); MAE/timm or Hugging Face
//     weights load through train.init_weights ({path: ..., convert: timm_vit | hf_vit, add_prefix:
//     vit.}: MAE's decoder, mask token and classifier left out, a DDP `module.` prefix stripped, the
//     position table resized bicubically as MAE's interpolate_pos_embed does); the constructor reads
//     no file;
//   - MFF: the outputs of blocks 3, 6, 9 and 12 (four evenly spaced, face.md §3.3), every token
//     (CLS + patches) kept; each block's tokens pass a LayerNorm (the last block's is the ViT's own
//     final norm, so pre-trained weights are all used) and a Linear to the decoder width, and are
//     fused by a weighted sum with learned softmax weights (`mff_fusion: weighted`, starting equal),
//     or concatenated over channels and projected (`mff_fusion: concat`); then one LayerNorm. The
//     ViT's tokens carry their position embeddings, so no extra positional code is added to the keys;
//   - decoder: 2 pre-norm layers of width 512, 8 heads, FFN 2048, dropout 0.1, each self-attention
//     among all queries (so tasks exchange information, as label queries do in Query2Label-style
//     decoders), cross-attention to the fused tokens, FFN; a final LayerNorm (DETR's pre-norm
//     decoder). Chosen light: 2 layers sit between the 1-2 of label-query decoders and DETR's 6;
//   - queries (face.md §3.3: one per label): expression one per class (7 = RAF-DB's basic
//     expressions), AU one per AU (BP4D's 12), attributes one per attribute (CelebA's 40), age one,
//     head pose one; N(0, 1) initialised as DETR's query embeddings;
//   - heads: per-label queries end in one linear classifier each (a [N, d] weight, a logit per
//     query); age and pose regress through a softmax over bins and its expectation, as DEX (age,
//     101 bins over 0..100 years) and Hopenet (pose, 66 bins over -99..99 degrees per angle) do, so
//     a randomly initialised head starts mid-range and the output stays bounded; the bin centres are
//     evenly spaced with both ends included (Hopenet's are left bin edges, a constant 1.5 degree shift);
//   - losses and optimisation are in the configs (experiments/qface/): CE (expression), weighted BCE
//     (AUs, attributes), L1 (age, pose), AdamW with the MAE fine-tuning recipe.
// Layer ids for layer-wise lr decay: the ViT's (0 = embeddings, 1..12 = blocks, 13 = final norm);
// MFF, queries, decoder and heads share the top id and train at the full rate.
//
// Outputs (only of the selected tasks): expression_logits [B, C], au_logits [B, N] (also as
// `logits` when AUs are the only task, so the AU losses and metrics work with their default keys),
// attribute_logits [B, A], age [B] (years), pose [B, 3] (yaw, pitch, roll in degrees); with
// return_bin_logits also age_logits [B, bins] and pose_logits [B, 3, bins] (for bin losses); with
// return_attention the last layer's cross-attention over the patches, averaged over heads:
// cross_attention [B, Q, h, w] in query order (tasks in the order of `tasks`), and the MFF weights.
#pragma once

#include "core/config.h"
#include "models/backbones/vit.h"
#include "models/model.h"

#include <string>
#include <vector>

namespace facet::models::face {

// The tasks Q-Face can decode, in their canonical order.
inline const std::vector<std::string>& qface_task_names() {
  static const std::vector<std::string> names = {"expression", "au", "attributes", "age", "pose"};
  return names;
}

struct QFaceOptions {
  ViTOptions vit;  // ViT-B/16 at 224 px (vit.h defaults); drop_path is set by the configs (0.1)
  std::vector<std::string> tasks = qface_task_names();
  std::vector<int64_t> mff_blocks = {3, 6, 9, 12};  // 1-based; must end with the last block
  std::string mff_fusion = "weighted";              // weighted | concat
  int64_t dim = 512, num_heads = 8, num_layers = 2;
  double mlp_ratio = 4.0, dropout = 0.1;
  int64_t expression_classes = 7;                                   // RAF-DB basic
  std::vector<int> aus = {1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24};  // BP4D's 12 (face.md §A.3)
  int64_t num_attributes = 40;                                      // CelebA
  int64_t age_bins = 101;
  double age_min = 0, age_max = 100;
  int64_t pose_bins = 66;
  double pose_min = -99, pose_max = 99;
  bool return_bin_logits = false, return_attention = false;

  static QFaceOptions from(const Config& c);
  bool has(const std::string& task) const;
  // Queries of one task.
  int64_t queries_of(const std::string& task) const;
};

// Multi-head attention with separate q/k/v projections (cross-attention needs them apart) that can
// also return its weights, averaged over the heads.
class QFaceAttentionImpl : public torch::nn::Module {
 public:
  QFaceAttentionImpl(int64_t dim, int64_t heads, double dropout);
  // query [B, Q, d], memory [B, L, d] -> [B, Q, d]; *weights = [B, Q, L] when given.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& memory, torch::Tensor* weights = nullptr);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_;
  double dropout_;
};
TORCH_MODULE(QFaceAttention);

// One pre-norm decoder layer: self-attention among the queries, cross-attention to the memory, FFN.
class QFaceDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit QFaceDecoderLayerImpl(const QFaceOptions& o);
  torch::Tensor forward(const torch::Tensor& queries, const torch::Tensor& memory, torch::Tensor* cross_weights = nullptr);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  QFaceAttention self_attn{nullptr}, cross_attn{nullptr};
  Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(QFaceDecoderLayer);

// One linear classifier per query: logits[b, i] = <x[b, i], weight[i]> + bias[i] (Query2Label's
// group-wise linear), so every label reads only its own query.
class QueryClassifierImpl : public torch::nn::Module {
 public:
  QueryClassifierImpl(int64_t queries, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x) { return (x * weight).sum(-1) + bias; }  // [B, N, d] -> [B, N]

  torch::Tensor weight, bias;
};
TORCH_MODULE(QueryClassifier);

class QFace : public Model, public LayerDepths {
 public:
  explicit QFace(QFaceOptions options);
  // batch: image [B, 3, S, S] with S = vit.image_size.
  Outputs forward(const data::Batch& batch) override;

  int64_t num_layer_ids() const override { return vit_->num_layer_ids(); }
  int64_t layer_id(const std::string& parameter_name) const override;
  const QFaceOptions& options() const { return options_; }

 private:
  QFaceOptions options_;
  std::vector<int64_t> intermediate_;  // mff_blocks without the last block, for forward_tokens
  ViT vit_{nullptr};
  torch::nn::ModuleList mff_norms_{nullptr};  // one LayerNorm per intermediate block
  torch::nn::ModuleList mff_proj_{nullptr};   // weighted: one Linear per fused block; concat: one
  torch::Tensor mff_logits_;                  // weighted: [n] softmax logits
  torch::nn::LayerNorm memory_norm_{nullptr};
  std::vector<torch::Tensor> queries_;        // per selected task, [Q_t, d]
  torch::nn::ModuleList layers_{nullptr};
  torch::nn::LayerNorm decoder_norm_{nullptr};
  QueryClassifier expression_head_{nullptr}, au_head_{nullptr}, attribute_head_{nullptr};
  Linear age_head_{nullptr}, pose_head_{nullptr};
  torch::Tensor age_centres_, pose_centres_;  // buffers: bin centres
};

}  // namespace facet::models::face
