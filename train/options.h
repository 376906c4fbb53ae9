// The `train` node of an experiment, read and range-checked once: the loop works with enums and
// numbers, never re-parses strings.
#pragma once

#include "core/config.h"

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace facet::train {

enum class NonFinite { skip, stop };

struct TrainOptions {
  int64_t max_steps = 0;         // optimiser steps; 0: use max_epochs
  int64_t max_epochs = 0;
  int64_t grad_accum = 1;        // micro-batches per optimiser step
  double clip_norm = 0;          // 0: no clipping
  std::string amp_name = "none";               // none | bf16 | fp16 (fp16 uses a gradient scaler)
  std::optional<torch::ScalarType> amp;        // parsed amp_name
  double ema_decay = 0;          // 0: no EMA; else in (0, 1)
  int64_t eval_every = 0;        // steps; 0: at the end of every epoch
  int64_t checkpoint_every = 0;  // steps; 0: after every evaluation
  int keep_last = 2;
  std::string best_metric;       // e.g. "val/accuracy"; empty: no best checkpoint
  bool best_max = true;          // best_mode: max | min
  int64_t log_every = 10;
  NonFinite non_finite = NonFinite::skip;
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  double dist_timeout_s = 300;
  bool overlap_grad_reduce = true;  // all-reduce gradient buckets during backward (several ranks)
  int64_t bucket_mb = 25;           // gradient all-reduce bucket size
  int threads = 0;                  // intra-op threads; 0: LibTorch's default
  int64_t log_images = 0;           // eval inputs shown per evaluation (TensorBoard + visuals/); 0: none
  torch::Dtype weights_dtype = torch::kFloat32;  // the model's floating tensors (bfloat16 for frozen giants)
  bool defer_init = false;          // build without random initialisation: init_weights must cover the model
  bool channels_last = false;       // NHWC convolution weights and image batches (train/memory_format.h)
  bool cudnn_benchmark = false;     // cuDNN times its algorithms for each new shape and keeps the fastest
  bool cuda_graph = false;          // capture the model's forward and backward as CUDA graphs (train/cuda_graph.h)
  bool prefetch_to_device = true;   // batch k+1 fetched (GPU: copied on a side stream) while k computes (train/device_prefetch.h)

  static TrainOptions from(const Config& train);
};

// "none" → nullopt, "bf16" → BFloat16, "fp16" → Half; anything else is an error naming train.amp.
std::optional<torch::ScalarType> parse_amp(const std::string& amp);

}  // namespace facet::train
