// Samplers decide each epoch's order over a dataset. The order depends only on (seed, epoch) and
// the sampler's own saved state — never on the number of workers or ranks — so a run resumes exactly
// and ranks agree without talking. Curriculum samplers (curriculum/) also receive per-sample losses.
#pragma once

#include "core/registry.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace facet::data {

class Dataset;

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The global batch (all ranks, one micro-batch) the loader cuts each epoch's order into, told
  // before the first epoch: a sampler that composes batches (easy and hard samples mixed in each)
  // arranges its order in runs of this size.
  virtual void set_batch_size(int64_t global_batch) {}
  // The dataset the sampler orders, told by the Loader that pairs them (before the first epoch), for
  // samplers that need more than its size (the length-grouped sampler reads the samples' lengths).
  virtual void attach(const Dataset& dataset) {}
  // The full epoch's order (dataset indices), identical on every rank.
  virtual std::vector<int64_t> epoch_order(int64_t epoch) = 0;
  // Whether the sampler learns from feedback (then the trainer gathers per-sample losses every step
  // and checkpoints the current epoch's order, which the sampler could not recompute on resume).
  virtual bool uses_feedback() const { return false; }
  // Per-sample training losses of one optimiser step, gathered over micro-batches and ranks: the
  // same values, in the same order, on every rank.
  virtual void feedback(const torch::Tensor& indices, const torch::Tensor& losses) {}
  virtual nlohmann::json state() const { return nlohmann::json::object(); }
  virtual void load_state(const nlohmann::json& state) {}
};

// Built from the `data.sampler` node, the dataset size and the run's seed.
using SamplerRegistry = Registry<std::shared_ptr<Sampler>, int64_t /*dataset size*/, uint64_t /*seed*/>;
SamplerRegistry& sampler_registry();

// A permutation drawn from a generator seeded with (seed, epoch).
class RandomSampler : public Sampler {
 public:
  RandomSampler(int64_t size, uint64_t seed) : size_(size), seed_(seed) {}
  std::vector<int64_t> epoch_order(int64_t epoch) override;

 private:
  int64_t size_;
  uint64_t seed_;
};

class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t size) : size_(size) {}
  std::vector<int64_t> epoch_order(int64_t epoch) override;

 private:
  int64_t size_;
};

// Mixes (seed, a, b) into one 64-bit seed (splitmix64), for per-epoch and per-sample generators.
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

}  // namespace facet::data
