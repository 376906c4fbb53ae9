#include "train/memory_format.h"

namespace facet::train {

void use_channels_last(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  auto convert = [](torch::Tensor& t) {
    if (t.defined() && t.dim() == 4) t.set_data(t.data().contiguous(torch::MemoryFormat::ChannelsLast));
  };
  for (auto& p : model.parameters()) convert(p);
  for (auto& b : model.buffers()) convert(b);
}

void batch_to_channels_last(data::Batch& batch) {
  for (auto& [name, t] : batch.fields)
    if (t.dim() == 4 && t.is_floating_point()) t = t.contiguous(torch::MemoryFormat::ChannelsLast);
}

}  // namespace facet::train
