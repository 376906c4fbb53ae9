// LLaVA's length-grouped sampler ("length_grouped"); see length_grouped.cpp.
#pragma once

#include "data/sampler.h"

namespace facet::data {

class LengthGroupedSampler : public Sampler {
 public:
  LengthGroupedSampler(int64_t size, uint64_t seed, bool modality);
  void set_batch_size(int64_t global_batch) override { batch_ = std::max<int64_t>(1, global_batch); }
  void attach(const Dataset& dataset) override;
  // Lengths as LLaVA's modality_lengths: positive with an image, negative text-only, never 0.
  void set_lengths(std::vector<int64_t> lengths);
  std::vector<int64_t> epoch_order(int64_t epoch) override;

 private:
  int64_t size_;
  uint64_t seed_;
  bool modality_;
  int64_t batch_ = 1;
  std::vector<int64_t> lengths_;
};

}  // namespace facet::data
