// `train.channels_last`: convolution weights and 4-D image batches in NHWC order. oneDNN (CPU) and
// cuDNN run most convolutional networks faster that way (ResNet-50 training step on 2 CPU cores:
// 0.87x the NCHW time, README.md "Benchmarks"); the model's arithmetic is unchanged. Off by default: a model
// that calls view() on a feature map needs contiguous NCHW and fails with LibTorch's view error.
#pragma once

#include "data/dataset.h"

#include <torch/torch.h>

namespace facet::train {

// Every 4-D parameter and buffer of `model`, in place (the tensors keep their identity, so
// optimisers built before or after see the same parameters).
void use_channels_last(torch::nn::Module& model);

// Every 4-D floating field of `batch` (images, maps), in place.
void batch_to_channels_last(data::Batch& batch);

}  // namespace facet::train
