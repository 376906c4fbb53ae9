#include "data/sampler.h"

#include <numeric>

namespace facet::data {

SamplerRegistry& sampler_registry() {
  static SamplerRegistry registry("sampler", "samplers");
  return registry;
}

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  auto splitmix = [](uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  };
  return splitmix(splitmix(splitmix(seed) ^ a) ^ b);
}

std::vector<int64_t> RandomSampler::epoch_order(int64_t epoch) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, static_cast<uint64_t>(epoch)));
  const auto perm = torch::randperm(size_, generator, torch::kInt64);
  return {perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + size_};
}

std::vector<int64_t> SequentialSampler::epoch_order(int64_t) {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}

FACET_REGISTER(sampler_registry(), "random", "A fresh random permutation every epoch, from (seed, epoch)",
               [](const Config&, int64_t size, uint64_t seed) { return std::make_shared<RandomSampler>(size, seed); });
FACET_REGISTER(sampler_registry(), "sequential", "Dataset order, every epoch",
               [](const Config&, int64_t size, uint64_t) { return std::make_shared<SequentialSampler>(size); });

}  // namespace facet::data
