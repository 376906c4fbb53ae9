#include "train/device_prefetch.h"

#include "train/memory_format.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace facet::train {

struct DevicePrefetcher::Cuda {
  explicit Cuda(c10::DeviceIndex index) : copy_stream(c10::cuda::getStreamFromPool(false, index)) {}
  c10::cuda::CUDAStream copy_stream;
  at::cuda::CUDAEvent copied;
};

namespace {

template <typename F>
void for_each_tensor(data::Batch& batch, F&& f) {
  for (auto& [name, t] : batch.fields) f(t);
  for (auto& [name, list] : batch.ragged)
    for (auto& t : list) f(t);
  if (batch.indices.defined()) f(batch.indices);
}

}  // namespace

DevicePrefetcher::DevicePrefetcher(data::Loader& loader, PrefetchOptions options)
    : loader_(loader), options_(options) {
  if (options_.device.is_cuda() && options_.ahead) {
    const auto index = options_.device.has_index() ? options_.device.index() : c10::cuda::current_device();
    cuda_ = std::make_unique<Cuda>(index);
  }
}

DevicePrefetcher::~DevicePrefetcher() = default;

void DevicePrefetcher::restart() {
  ahead_.reset();
  fetched_ = false;
}

std::optional<DeviceBatch> DevicePrefetcher::fetch() {
  auto host = loader_.next();
  if (!host) return std::nullopt;
  DeviceBatch b;
  b.position = loader_.position();
  const bool cuda = options_.device.is_cuda();
  auto move = [&] {
    b.device = host->to(options_.device, /*non_blocking=*/cuda);
    if (options_.channels_last) batch_to_channels_last(b.device);
  };
  if (cuda_) {
    const c10::cuda::CUDAStreamGuard on_copy_stream(cuda_->copy_stream);
    move();
    cuda_->copied.record(cuda_->copy_stream);
  } else {
    move();
  }
  b.host = std::move(*host);
  return b;
}

std::optional<DeviceBatch> DevicePrefetcher::next() {
  if (!options_.ahead) return fetch();
  if (!fetched_) ahead_ = fetch();
  std::optional<DeviceBatch> ready = std::move(ahead_);
  ahead_.reset();
  fetched_ = false;
  if (!ready) {
    fetched_ = true;  // the epoch has ended: stay ended until restart()
    return std::nullopt;
  }
  if (cuda_) {
    // The compute stream waits for the copy, and the allocator learns that the batch's memory,
    // allocated on the copy stream, is in use on the compute stream until the step is done with it.
    const auto compute = c10::cuda::getCurrentCUDAStream(cuda_->copy_stream.device_index());
    cuda_->copied.block(compute);
    for_each_tensor(ready->device, [&](torch::Tensor& t) {
      if (t.defined() && t.is_cuda()) t.record_stream(compute);
    });
  }
  ahead_ = fetch();  // overlaps the step about to run on `ready`
  fetched_ = true;
  return ready;
}

}  // namespace facet::train
