// The Loader: worker threads (no GIL) read and augment samples, collate them into batches and hand
// them over in order through a bounded prefetch window. Each epoch's order comes from a Sampler;
// in a distributed run each rank takes a disjoint slice of every global batch, so N ranks with
// local batch B/N see exactly the samples one rank with batch B would.
#pragma once

#include "data/dataset.h"
#include "data/sampler.h"
#include "data/transform.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace facet::data {

enum class OnError { fail, skip };

struct LoaderOptions {
  int64_t batch_size = 1;   // global batch, over all ranks
  int workers = 2;
  int prefetch = 4;         // batches ready or in flight ahead of the consumer
  bool drop_last = true;
  int rank = 0;
  int world_size = 1;
  bool pin_memory = false;  // page-locked batches for non-blocking host-to-GPU copies
  OnError on_error = OnError::fail;
  // Return a batch none of whose samples loaded (on_error: skip) as an empty batch instead of
  // skipping it: the trainer decides over all ranks, so that ranks never fall out of step.
  bool keep_empty_batches = false;
  uint64_t seed = 0;
  std::string split;  // for messages
  std::vector<std::shared_ptr<Transform>> transforms;  // applied to each sample, in order
};

// glibc's allocator tuned for training: buffers up to 64 MiB come from the heap, not one mmap each,
// and up to 512 MiB of freed heap is kept. Decoded samples (a few hundred KiB) and activations were
// otherwise mmapped and unmapped one by one, or the heap top trimmed and regrown every step: page
// faults and zeroing cost a face loader a tenth of its time, and the demo CNN's training step 7.0 vs
// 8.5 ms. Every training process calls it (the Loader does); once per process.
void keep_freed_buffers_in_the_heap();

class Loader {
 public:
  // Calls keep_freed_buffers_in_the_heap().
  Loader(std::shared_ptr<Dataset> dataset, std::shared_ptr<Sampler> sampler, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Begins `epoch`, skipping its first `skip_batches` (exact resume mid-epoch). The epoch's order
  // comes from the sampler, or is `order` when given (a checkpointed order of a sampler that
  // adapts to feedback, which could not recompute it).
  void start_epoch(int64_t epoch, int64_t skip_batches = 0, std::vector<int64_t> order = {});
  // The next batch of this rank, or nullopt at the end of the epoch. Rethrows a worker's error.
  std::optional<Batch> next();
  // The current epoch's order over the dataset (all ranks).
  const std::vector<int64_t>& epoch_order() const { return order_; }

  int64_t batches_per_epoch() const;
  // Batches of this epoch behind us, delivered or skipped because none of their samples loaded:
  // where start_epoch(epoch, position()) would continue.
  int64_t position() const;
  // Whether samples reach the transforms with 8-bit images (Dataset::passes_eight_bit_images and
  // takes_eight_bit_images): decoded pixels become normalised floats in one pass.
  bool eight_bit_images() const { return eight_bit_; }
  int64_t local_batch_size() const { return options_.batch_size / options_.world_size; }
  // Samples skipped under on_error = skip in the current epoch (reported at its end).
  int64_t skipped() const { return skipped_; }
  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }
  Sampler& sampler() { return *sampler_; }

 private:
  void stop_workers();
  void worker_loop();
  Batch load_batch(int64_t batch_index);

  std::shared_ptr<Dataset> dataset_;
  std::shared_ptr<Sampler> sampler_;
  LoaderOptions options_;
  PaddingSpec padding_;  // the dataset's, asked once
  bool eight_bit_ = false;  // the transforms take 8-bit images (takes_eight_bit_images)

  // Per-epoch plan, written before workers start.
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::vector<std::vector<int64_t>> batches_;  // this rank's indices per batch

  mutable std::mutex mutex_;
  std::condition_variable produced_, consumed_;
  int64_t next_to_claim_ = 0;     // next batch index a worker may take
  int64_t next_to_deliver_ = 0;   // next batch index the consumer expects
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::atomic<int64_t> skipped_{0};
  std::vector<std::thread> workers_;
};

}  // namespace facet::data
