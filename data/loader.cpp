#include "data/loader.h"

#include "data/batch_slots.h"

#include "core/log.h"

#include <malloc.h>

namespace facet::data {

void keep_freed_buffers_in_the_heap() {
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    return true;
  }();
  (void)once;
}

Loader::Loader(std::shared_ptr<Dataset> dataset, std::shared_ptr<Sampler> sampler, LoaderOptions options)
    : dataset_(std::move(dataset)), sampler_(std::move(sampler)), options_(options), padding_(dataset_->padding()) {
  keep_freed_buffers_in_the_heap();
  if (options_.batch_size <= 0) fail("data.batch_size must be positive, got {}", options_.batch_size);
  if (options_.world_size <= 0 || options_.batch_size % options_.world_size != 0)
    fail("data.batch_size ({}) must be divisible by the number of ranks ({})", options_.batch_size,
         options_.world_size);
  if (options_.workers < 0) fail("data.workers must be >= 0, got {}", options_.workers);
  options_.prefetch = std::max(options_.prefetch, 1);
  eight_bit_ = dataset_->passes_eight_bit_images() && takes_eight_bit_images(options_.transforms);
  sampler_->attach(*dataset_);  // samplers that need more than the size (lengths) read it here
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::batches_per_epoch() const {
  const int64_t n = dataset_->size();
  return options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
}

void Loader::stop_workers() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  produced_.notify_all();
  consumed_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Loader::start_epoch(int64_t epoch, int64_t skip_batches, std::vector<int64_t> order_given) {
  stop_workers();
  epoch_ = epoch;
  order_ = order_given.empty() ? sampler_->epoch_order(epoch) : std::move(order_given);
  for (int64_t i : order_)
    if (i < 0 || i >= dataset_->size())
      fail("sampler: epoch {} order holds index {}, outside the dataset's 0..{}", epoch, i, dataset_->size() - 1);
  const std::vector<int64_t>& order = order_;
  const int64_t global = options_.batch_size, local = local_batch_size();
  batches_.clear();
  for (int64_t start = 0; start < static_cast<int64_t>(order.size()); start += global) {
    const int64_t end = std::min<int64_t>(start + global, static_cast<int64_t>(order.size()));
    if (end - start < global && options_.drop_last) break;
    // Rank r takes the r-th contiguous slice of the global batch (a short last batch is split as
    // evenly as possible; a rank may get an empty slice, which next() skips).
    const int64_t size = end - start, share = (size + options_.world_size - 1) / options_.world_size;
    const int64_t lo = std::min(size, options_.rank * (size == global ? local : share));
    const int64_t hi = std::min(size, lo + (size == global ? local : share));
    batches_.emplace_back(order.begin() + start + lo, order.begin() + start + hi);
  }
  std::lock_guard lock(mutex_);
  next_to_claim_ = next_to_deliver_ = std::min<int64_t>(skip_batches, static_cast<int64_t>(batches_.size()));
  ready_.clear();
  error_ = nullptr;
  stopping_ = false;
  skipped_ = 0;
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

Batch Loader::load_batch(int64_t batch_index) {
  const auto& indices = batches_[static_cast<size_t>(batch_index)];
  std::vector<Sample> samples;
  std::vector<int64_t> kept;
  samples.reserve(indices.size());
  std::optional<EightBitImages> eight_bit;  // readers may hand over 8-bit pixels: normalize converts them
  if (eight_bit_) eight_bit.emplace();
  const bool pin = options_.pin_memory && torch::cuda::is_available();
  BatchSlots slots(static_cast<int64_t>(indices.size()), pin);  // normalize writes into the batch's rows
  for (int64_t index : indices) {
    try {
      const BatchSlots::Row row(slots, static_cast<int64_t>(samples.size()));
      const uint64_t seed = mix_seed(options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(index));
      const auto& transforms = options_.transforms;
      at::Generator generator;
      if (!transforms.empty()) generator = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, 0x7472616e73666f72ull));
      std::optional<KeptWindow> window;  // the reader may compute only the crop that the transforms keep
      if (eight_bit_ && !transforms.empty()) window.emplace(*transforms.front(), generator);
      Sample sample = dataset_->get(index, seed);
      window.reset();
      apply_transforms(transforms, sample, generator);
      samples.push_back(std::move(sample));
      kept.push_back(index);
    } catch (const std::exception& e) {
      // Any failure of one sample — Facet's own errors, LibTorch's, OpenCV's, an allocation — skips
      // that sample under on_error: skip, and otherwise ends the run naming the sample.
      const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
      const std::string what = torch_error ? torch_error->what_without_backtrace() : e.what();
      if (options_.on_error == OnError::fail) {
        if (dynamic_cast<const Error*>(&e)) throw;
        fail("sample {} of the {} split failed to load (data.on_error: skip would skip it): {}", index,
             options_.split.empty() ? "data" : options_.split, what);
      }
      ++skipped_;
      log::warn("skipping sample {} (data.on_error: skip): {}", index, what);
    }
  }
  if (samples.empty()) return Batch{};
  Batch batch = collate(std::move(samples), std::move(kept), padding_, &slots);
  if (pin) {
    for (auto& [name, t] : batch.fields) t = t.pin_memory();  // a no-op on the slots' pinned tensors
    for (auto& [name, list] : batch.ragged)  // boxes, masks: their copies are non-blocking too
      for (auto& t : list) t = t.pin_memory();
  }
  return batch;
}

void Loader::worker_loop() {
  while (true) {
    int64_t index;
    {
      std::unique_lock lock(mutex_);
      consumed_.wait(lock, [&] {
        return stopping_ || next_to_claim_ >= static_cast<int64_t>(batches_.size()) ||
               next_to_claim_ < next_to_deliver_ + options_.prefetch;
      });
      if (stopping_ || next_to_claim_ >= static_cast<int64_t>(batches_.size())) return;
      index = next_to_claim_++;
    }
    try {
      Batch batch = load_batch(index);
      std::lock_guard lock(mutex_);
      ready_.emplace(index, std::move(batch));
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    produced_.notify_all();
  }
}

int64_t Loader::position() const {
  std::lock_guard lock(mutex_);
  return next_to_deliver_;
}

std::optional<Batch> Loader::next() {
  while (true) {
    std::unique_lock lock(mutex_);
    if (next_to_deliver_ >= static_cast<int64_t>(batches_.size())) {
      if (skipped_ > 0) log::warn("epoch {}: {} sample(s) skipped because they failed to load", epoch_, skipped_.load());
      return std::nullopt;
    }
    const int64_t index = next_to_deliver_;
    if (options_.workers == 0) {  // load on the calling thread
      lock.unlock();
      Batch batch = load_batch(index);
      lock.lock();
      ++next_to_deliver_;
      ++next_to_claim_;
      if (batch.size() == 0 && !options_.keep_empty_batches) continue;
      return batch;
    }
    produced_.wait(lock, [&] { return error_ || ready_.count(index); });
    if (auto it = ready_.find(index); it != ready_.end()) {
      Batch batch = std::move(it->second);
      ready_.erase(it);
      ++next_to_deliver_;
      lock.unlock();
      consumed_.notify_all();
      if (batch.size() == 0 && !options_.keep_empty_batches) continue;
      return batch;
    }
    std::rethrow_exception(error_);
  }
}

}  // namespace facet::data
