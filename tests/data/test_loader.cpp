#include "core/config.h"
#include "data/loader.h"
#include "data/transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

namespace facet::data::test_loader {
namespace {

using ::testing::HasSubstr;

// Sample i holds the value i (and fails to load when i is in `bad`), with a random part drawn
// from the per-sample seed so augmentation determinism can be checked.
class Counting : public Dataset {
 public:
  Counting(int64_t n, std::set<int64_t> bad = {}) : n_(n), bad_(std::move(bad)) {}
  int64_t size() const override { return n_; }
  Sample get(int64_t i, uint64_t seed) const override {
    if (bad_.count(i)) fail("/data/sample_{}.png: truncated PNG", i);
    auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
    Sample s;
    s.fields["x"] = torch::tensor({static_cast<float>(i)});
    s.fields["noise"] = torch::rand({1}, g);
    s.ragged["boxes"] = torch::zeros({i % 3, 4});
    s.id = "sample_" + std::to_string(i);
    return s;
  }

 private:
  int64_t n_;
  std::set<int64_t> bad_;
};

std::vector<Batch> epoch(Loader& loader, int64_t e, int64_t skip = 0) {
  loader.start_epoch(e, skip);
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

TEST(Loader, OrderDependsOnSeedAndEpochNotOnWorkers) {
  auto data = std::make_shared<Counting>(50);
  std::vector<std::vector<float>> seen;
  for (int workers : {0, 1, 3}) {
    LoaderOptions o;
    o.batch_size = 8;
    o.workers = workers;
    o.seed = 7;
    Loader loader(data, std::make_shared<RandomSampler>(50, 7), o);
    std::vector<float> values;
    for (const auto& b : epoch(loader, 2))
      for (int64_t i = 0; i < b.size(); ++i) values.push_back(b.fields.at("x")[i][0].item<float>() + b.fields.at("noise")[i][0].item<float>());
    seen.push_back(values);
  }
  EXPECT_EQ(seen[0].size(), 48u) << "drop_last keeps 6 full batches of 8";
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(seen[0], seen[2]);
}

TEST(Loader, CollatesFieldsAndKeepsRaggedTargets) {
  LoaderOptions o;
  o.batch_size = 4;
  Loader loader(std::make_shared<Counting>(8), std::make_shared<SequentialSampler>(8), o);
  const auto batches = epoch(loader, 0);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].fields.at("x").sizes(), (std::vector<int64_t>{4, 1}));
  ASSERT_EQ(batches[0].ragged.at("boxes").size(), 4u);
  EXPECT_EQ(batches[0].ragged.at("boxes")[2].size(0), 2);
  EXPECT_EQ(batches[1].ids[0], "sample_4");
  EXPECT_EQ(batches[1].indices[3].item<int64_t>(), 7);
}

TEST(Loader, RanksTakeDisjointSlicesOfEachGlobalBatch) {
  auto data = std::make_shared<Counting>(40);
  std::vector<std::vector<Batch>> per_rank;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions o;
    o.batch_size = 8;
    o.rank = rank;
    o.world_size = 2;
    Loader loader(data, std::make_shared<RandomSampler>(40, 1), o);
    per_rank.push_back(epoch(loader, 0));
  }
  LoaderOptions single;
  single.batch_size = 8;
  Loader one(data, std::make_shared<RandomSampler>(40, 1), single);
  const auto whole = epoch(one, 0);
  ASSERT_EQ(per_rank[0].size(), whole.size());
  for (size_t s = 0; s < whole.size(); ++s) {
    const auto joined = torch::cat({per_rank[0][s].indices, per_rank[1][s].indices});
    EXPECT_TRUE(torch::equal(joined, whole[s].indices)) << "step " << s;
  }
}

TEST(Loader, ResumesMidEpoch) {
  LoaderOptions o;
  o.batch_size = 5;
  o.workers = 2;
  Loader loader(std::make_shared<Counting>(30), std::make_shared<RandomSampler>(30, 3), o);
  const auto full = epoch(loader, 1);
  const auto tail = epoch(loader, 1, 4);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_TRUE(torch::equal(tail[0].indices, full[4].indices));
}

TEST(Loader, ABadSampleIsAnErrorNamingItsFileOrASkippedWarning) {
  auto data = std::make_shared<Counting>(16, std::set<int64_t>{5});
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  Loader failing(data, std::make_shared<SequentialSampler>(16), o);
  try {
    epoch(failing, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/data/sample_5.png: truncated PNG"));
  }
  o.on_error = OnError::skip;
  Loader skipping(data, std::make_shared<SequentialSampler>(16), o);
  const auto batches = epoch(skipping, 0);
  EXPECT_EQ(skipping.skipped(), 1);
  EXPECT_EQ(batches[1].size(), 3);
  // A batch none of whose samples load is skipped, and still counts in the position a resume
  // continues from: after batches 0 and 2 (batch 1 = samples 4..7, all bad) the position is 3.
  auto all_bad = std::make_shared<Counting>(16, std::set<int64_t>{4, 5, 6, 7});
  for (int workers : {0, 2}) {
    o.workers = workers;
    Loader loader(all_bad, std::make_shared<SequentialSampler>(16), o);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
    EXPECT_EQ(loader.position(), 1);
    const auto second = loader.next();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->indices[0].item<int64_t>(), 8);
    EXPECT_EQ(loader.position(), 3) << workers << " workers";
  }
}

TEST(Loader, BatchSizeMustSplitOverRanks) {
  LoaderOptions o;
  o.batch_size = 5;
  o.world_size = 2;
  try {
    Loader l(std::make_shared<Counting>(10), std::make_shared<SequentialSampler>(10), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.batch_size (5) must be divisible by the number of ranks (2)"));
  }
}

TEST(Transforms, NormalizeAndFlipFromConfig) {
  const auto c = Config::parse(R"(
transforms:
  - {name: random_hflip, p: 1.0, fields: [image]}
  - {name: normalize, mean: [1.0, 2.0], std: [2.0, 4.0], field: image}
)");
  const auto ts = build_transforms(c.at("transforms"));
  Sample s;
  s.fields["image"] = torch::arange(8, torch::kFloat).view({2, 2, 2});
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  for (const auto& t : ts) t->apply(s, g);
  // channel 0: [[0,1],[2,3]] flipped → [[1,0],[3,2]], then (x-1)/2
  EXPECT_TRUE(torch::allclose(s.fields.at("image")[0], torch::tensor({{0.0f, -0.5f}, {1.0f, 0.5f}})));
  // channel 1: [[4,5],[6,7]] flipped → [[5,4],[7,6]], then (x-2)/4
  EXPECT_TRUE(torch::allclose(s.fields.at("image")[1], torch::tensor({{0.75f, 0.5f}, {1.25f, 1.0f}})));
  EXPECT_THROW(build_transforms(Config::parse("t: [{name: normalize, mean: [1], std: [0]}]").at("t")), Error);
}

}  // namespace
}  // namespace facet::data::test_loader
