// Batches moved to the training device one step ahead (`train.prefetch_to_device`, on by default).
// On a GPU the host-to-device copy of batch k+1 is issued on a copy stream of its own while batch k
// computes on the current stream; the compute stream waits on the copy's event only when it takes
// the batch, and the batch's memory is recorded as used by the compute stream so the caching
// allocator never hands it to the next copy too early (what torch.utils.data's pin_memory +
// a CUDA-stream prefetcher does in the NVIDIA/apex examples). The loader's batches are pinned, so
// the copies are truly asynchronous.
//
// On the CPU there is no copy to overlap (the loader's worker threads already prepare batches
// ahead), but a CPU run looks ahead the same way: one batch held back costs nothing there, and every
// CPU test of training, resuming and evaluating then exercises the bookkeeping a GPU run relies on.
// With look-ahead off (`train.prefetch_to_device: false`) each batch is taken when asked for.
//
// Positions: a batch handed out carries the loader position just after it, so a checkpoint written
// after its step resumes at the batch that follows it, not after the one fetched ahead.
#pragma once

#include "data/loader.h"

#include <torch/torch.h>

#include <memory>
#include <optional>

namespace facet::train {

struct DeviceBatch {
  data::Batch host;    // as the loader gave it (predictions and pictures read it)
  data::Batch device;  // on the training device, channels-last when asked
  int64_t position = 0;  // the loader's position after this batch (Loader::position)
};

struct PrefetchOptions {
  torch::Device device = torch::kCPU;
  bool channels_last = false;  // 4-D floating fields to NHWC (train/memory_format.h)
  // Hold the next batch on the device while the current one computes (on a CUDA device, copied on
  // a stream of its own).
  bool ahead = true;
};

class DevicePrefetcher {
 public:
  DevicePrefetcher(data::Loader& loader, PrefetchOptions options);
  ~DevicePrefetcher();
  DevicePrefetcher(const DevicePrefetcher&) = delete;
  DevicePrefetcher& operator=(const DevicePrefetcher&) = delete;

  // Call after loader.start_epoch: drops what was fetched ahead from the previous epoch.
  void restart();
  // The next batch of the epoch, ready to compute on the current stream; nullopt at its end.
  std::optional<DeviceBatch> next();

  bool looks_ahead() const { return options_.ahead; }

 private:
  std::optional<DeviceBatch> fetch();  // the loader's next batch, its copy issued

  data::Loader& loader_;
  PrefetchOptions options_;
  bool fetched_ = false;  // `ahead_` holds the result of a fetch (a batch, or the epoch's end)
  std::optional<DeviceBatch> ahead_;
  struct Cuda;  // copy stream and event, defined where CUDA's headers are included
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace facet::train
