// The device prefetcher's bookkeeping, exercised on the CPU with look-ahead forced on: the same
// batches in the same order as the loader gives them, each with the position just after it, across
// epochs and a mid-epoch restart. (The CUDA copy stream is tested in tests/gpu.)
#include "data/loader.h"
#include "train/device_prefetch.h"

#include <gtest/gtest.h>

namespace facet::train::test_device_prefetch {
namespace {

class Numbers : public data::Dataset {
 public:
  explicit Numbers(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  data::Sample get(int64_t i, uint64_t) const override {
    data::Sample s;
    s.fields["image"] = torch::full({2, 3, 3}, static_cast<float>(i));
    s.id = std::to_string(i);
    return s;
  }

 private:
  int64_t n_;
};

struct Seen {
  std::vector<int64_t> first_index;
  std::vector<int64_t> position;
};

Seen through_loader(data::Loader& loader) {
  Seen s;
  while (auto b = loader.next()) {
    s.first_index.push_back(b->indices[0].item<int64_t>());
    s.position.push_back(loader.position());
  }
  return s;
}

Seen through_prefetcher(DevicePrefetcher& prefetcher) {
  Seen s;
  while (auto b = prefetcher.next()) {
    s.first_index.push_back(b->device.indices[0].item<int64_t>());
    EXPECT_TRUE(b->device.fields.at("image").equal(b->host.fields.at("image")));
    s.position.push_back(b->position);
  }
  EXPECT_FALSE(prefetcher.next()) << "an ended epoch stays ended until restart()";
  return s;
}

std::unique_ptr<data::Loader> loader_of(int64_t n, int workers) {
  data::LoaderOptions o;
  o.batch_size = 3;
  o.workers = workers;
  return std::make_unique<data::Loader>(std::make_shared<Numbers>(n), std::make_shared<data::RandomSampler>(n, 5), o);
}

TEST(DevicePrefetch, LooksAheadWithoutChangingBatchesOrPositions) {
  for (int workers : {0, 2}) {
    auto plain_loader = loader_of(20, workers), ahead_loader = loader_of(20, workers);
    data::Loader &plain = *plain_loader, &ahead = *ahead_loader;
    DevicePrefetcher prefetcher(ahead, {torch::kCPU, /*channels_last=*/false, /*ahead=*/true});
    ASSERT_TRUE(prefetcher.looks_ahead());
    for (int64_t epoch : {0, 1}) {
      plain.start_epoch(epoch);
      ahead.start_epoch(epoch);
      prefetcher.restart();
      const Seen want = through_loader(plain), got = through_prefetcher(prefetcher);
      EXPECT_EQ(got.first_index, want.first_index) << "epoch " << epoch << ", " << workers << " workers";
      EXPECT_EQ(got.position, want.position) << "the position is the loader's just after each batch, not after the one ahead";
      EXPECT_EQ(want.position, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
    }
  }
}

TEST(DevicePrefetch, ARestartInTheMiddleOfAnEpochDropsTheBatchFetchedAhead) {
  auto owned = loader_of(20, 1);
  data::Loader& loader = *owned;
  DevicePrefetcher prefetcher(loader, {torch::kCPU, false, true});
  loader.start_epoch(0);
  prefetcher.restart();
  ASSERT_TRUE(prefetcher.next());
  const auto second = prefetcher.next();  // the third is now fetched ahead
  ASSERT_TRUE(second);
  EXPECT_EQ(second->position, 2);
  // Resuming after the second batch: the loader skips two, and the prefetcher starts afresh.
  loader.start_epoch(0, /*skip_batches=*/second->position);
  prefetcher.restart();
  auto plain = loader_of(20, 1);
  plain->start_epoch(0, 2);
  const Seen want = through_loader(*plain), got = through_prefetcher(prefetcher);
  EXPECT_EQ(got.first_index, want.first_index);
  EXPECT_EQ(got.position, want.position);
  EXPECT_EQ(got.position.front(), 3);
}

TEST(DevicePrefetch, ChannelsLastAppliesToTheDeviceBatchOnly) {
  auto owned = loader_of(6, 0);
  data::Loader& loader = *owned;
  DevicePrefetcher prefetcher(loader, {torch::kCPU, /*channels_last=*/true, /*ahead=*/false});
  EXPECT_FALSE(prefetcher.looks_ahead());
  loader.start_epoch(0);
  prefetcher.restart();
  const auto b = prefetcher.next();
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->device.fields.at("image").is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(b->host.fields.at("image").is_contiguous());
  EXPECT_EQ(b->position, 1);
}

}  // namespace
}  // namespace facet::train::test_device_prefetch
