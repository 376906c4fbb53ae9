#include "core/config.h"
#include "data/batch_slots.h"
#include "data/loader.h"
#include "data/pooled_memory.h"
#include "data/transform.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace facet::data::test_batch_slots {
namespace {

void run(const std::string& yaml, Sample& s) {
  const auto transforms = build_transforms(Config::parse("t: [" + yaml + "]").at("t"));
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  for (const auto& t : transforms) t->apply(s, g);
}

Sample image_sample(float value) {
  Sample s;
  s.id = "sample_" + std::to_string(static_cast<int>(value));
  s.fields["image"] = torch::full({3, 4, 5}, value);
  return s;
}

const std::string normalize = "{name: normalize, mean: [1], std: [2]}";

// Sample i (an image of value i) through pipelines[i], in row i of `slots`, as the loader runs it.
std::vector<Sample> transformed(BatchSlots& slots, const std::vector<std::string>& pipelines) {
  std::vector<Sample> samples;
  for (size_t i = 0; i < pipelines.size(); ++i) {
    const BatchSlots::Row row(slots, static_cast<int64_t>(i));
    samples.push_back(image_sample(static_cast<float>(i)));
    run(pipelines[i], samples.back());
  }
  return samples;
}

TEST(BatchSlots, NormalizeWritesEachSampleIntoItsRowAndCollateCopiesNothing) {
  BatchSlots slots(3, /*pinned=*/false);
  std::vector<Sample> samples = transformed(slots, {normalize, normalize, normalize});
  const void* first_row = samples[0].fields.at("image").data_ptr();
  const Batch batch = collate(std::move(samples), {0, 1, 2}, {}, &slots);
  const torch::Tensor& images = batch.fields.at("image");
  EXPECT_EQ(images.data_ptr(), first_row) << "the rows the samples were written into, not a copy";
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{3, 3, 4, 5}));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(images[i], torch::full({3, 4, 5}, (i - 1.0f) / 2))) << i;
}

TEST(BatchSlots, AFlipAfterNormalizeMirrorsTheRowInPlace) {
  // DeepLesion's pipeline order: the flip finds the field in its row and mirrors it there, so the
  // batch is still the rows and collate copies nothing.
  BatchSlots slots(2, false);
  std::vector<Sample> samples;
  for (int64_t i = 0; i < 2; ++i) {
    const BatchSlots::Row row(slots, i);
    Sample s;
    s.id = "ramp";
    s.fields["image"] = torch::arange(2 * 3 * 7, torch::kFloat).view({2, 3, 7}) + static_cast<float>(i);
    s.ragged["boxes"] = torch::tensor({{1.0f, 0.0f, 3.0f, 2.0f}});
    run(normalize + ", {name: random_hflip, p: 1.0}", s);
    samples.push_back(std::move(s));
  }
  const void* first_row = samples[0].fields.at("image").data_ptr();
  const Batch batch = collate(std::move(samples), {0, 1}, {}, &slots);
  const torch::Tensor& images = batch.fields.at("image");
  EXPECT_EQ(images.data_ptr(), first_row) << "mirrored in the rows, not copied";
  for (int64_t i = 0; i < 2; ++i) {
    const torch::Tensor expected = ((torch::arange(2 * 3 * 7, torch::kFloat).view({2, 3, 7}) + static_cast<float>(i) - 1) / 2).flip({-1});
    EXPECT_TRUE(torch::equal(images[i], expected)) << i;
    EXPECT_TRUE(torch::equal(batch.ragged.at("boxes")[static_cast<size_t>(i)], torch::tensor({{4.0f, 0.0f, 6.0f, 2.0f}})));
  }
  // A field that is not its row (normalize's own tensor, outside any Row) is not changed in place.
  Sample alone;
  alone.id = "alone";
  const torch::Tensor original = torch::arange(6, torch::kFloat).view({1, 2, 3});
  alone.fields["image"] = original;
  run("{name: random_hflip, p: 1.0}", alone);
  EXPECT_TRUE(torch::equal(original, torch::arange(6, torch::kFloat).view({1, 2, 3})));
  EXPECT_TRUE(torch::equal(alone.fields.at("image"), torch::tensor({{{2.0f, 1.0f, 0.0f}, {5.0f, 4.0f, 3.0f}}})));
}

TEST(BatchSlots, FieldsThatLeftTheirRowAreStackedAsBefore) {
  // Sample 1 is flipped after normalize (in its row), and normalize runs twice on sample 2: the
  // second cannot write over the row it reads, so it gets a tensor of its own.
  BatchSlots slots(4, false);
  std::vector<Sample> samples =
      transformed(slots, {normalize, normalize + ", {name: random_hflip, p: 1.0}", normalize + ", " + normalize});
  const void* first_row = samples[0].fields.at("image").data_ptr();
  const Batch batch = collate(std::move(samples), {0, 1, 2}, {}, &slots);
  const torch::Tensor& images = batch.fields.at("image");
  EXPECT_NE(images.data_ptr(), first_row);
  EXPECT_EQ(images.size(0), 3);
  EXPECT_TRUE(torch::equal(images[0], torch::full({3, 4, 5}, -0.5f)));
  EXPECT_TRUE(torch::equal(images[1], torch::full({3, 4, 5}, 0.0f)));
  EXPECT_TRUE(torch::equal(images[2], torch::full({3, 4, 5}, (0.5f - 1) / 2)));

  // A short batch (2 of 4 planned rows) is the first rows of the slots' tensor.
  BatchSlots short_slots(4, false);
  std::vector<Sample> two = transformed(short_slots, {normalize, normalize});
  const void* short_first = two[0].fields.at("image").data_ptr();
  const Batch short_batch = collate(std::move(two), {0, 1}, {}, &short_slots);
  EXPECT_EQ(short_batch.fields.at("image").data_ptr(), short_first);
  EXPECT_EQ(short_batch.fields.at("image").size(0), 2);

  // Outside a Row (a transform run by hand), normalize makes a tensor of its own.
  Sample alone = image_sample(3);
  run(normalize, alone);
  EXPECT_TRUE(torch::equal(alone.fields.at("image"), torch::full({3, 4, 5}, 1.0f)));
}

// Sample i: an image of value i; the samples in `bad` fail after normalize has written their row.
class Images : public Dataset {
 public:
  explicit Images(std::set<int64_t> bad) : bad_(std::move(bad)) {}
  int64_t size() const override { return 12; }
  Sample get(int64_t i, uint64_t) const override { return image_sample(static_cast<float>(i)); }
  std::set<int64_t> bad_;
};

class FailOn : public Transform {
 public:
  explicit FailOn(std::set<int64_t> bad) : bad_(std::move(bad)) {}
  void apply(Sample& s, at::Generator&) const override {
    if (bad_.contains(std::lround(s.fields.at("image").view(-1)[0].item<float>() * 2 + 1)))  // undo (i - 1) / 2
      fail("{}: damaged", s.id);
  }
  std::set<int64_t> bad_;
};

TEST(BatchSlots, TheLoadersBatchesAreTheNormalisedSamplesEvenWhenOneFailsAfterWritingItsRow) {
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  o.on_error = OnError::skip;
  o.transforms = build_transforms(Config::parse("t: [" + normalize + "]").at("t"));
  o.transforms.push_back(std::make_shared<FailOn>(std::set<int64_t>{5}));
  Loader loader(std::make_shared<Images>(std::set<int64_t>{}), std::make_shared<SequentialSampler>(12), o);
  loader.start_epoch(0);
  std::vector<float> seen;
  while (auto batch = loader.next()) {
    const torch::Tensor& images = batch->fields.at("image");
    ASSERT_TRUE(images.is_contiguous());
    for (int64_t r = 0; r < images.size(0); ++r) {
      EXPECT_TRUE(torch::equal(images[r], torch::full({3, 4, 5}, images[r][0][0][0].item<float>())));
      seen.push_back(images[r][0][0][0].item<float>() * 2 + 1);
    }
  }
  EXPECT_EQ(seen, (std::vector<float>{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11})) << "sample 5 failed after writing its row: skipped, and its row went to sample 6";
}

// pooled_empty: a freed large block is kept and handed to the next tensor of its size; small
// tensors are torch::empty's and never kept.
TEST(PooledMemory, AFreedBlockIsKeptAndReusedForTheSameSize) {
  const size_t before = pooled_bytes_kept();
  const std::vector<int64_t> sizes = {3, 512, 512};  // 3 MiB of floats, a size no other test pools
  const void* first = nullptr;
  {
    torch::Tensor t = pooled_empty(sizes, torch::kFloat);
    ASSERT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.sizes(), at::IntArrayRef(sizes));
    t.fill_(1);  // the memory is usable
    first = t.data_ptr();
  }
  EXPECT_EQ(pooled_bytes_kept(), before + 3 * 512 * 512 * sizeof(float));
  torch::Tensor again = pooled_empty(sizes, torch::kFloat);
  EXPECT_EQ(again.data_ptr(), first);
  EXPECT_EQ(pooled_bytes_kept(), before);
  { const torch::Tensor small = pooled_empty({16, 16}, torch::kFloat); }
  EXPECT_EQ(pooled_bytes_kept(), before) << "blocks under 1 MiB are malloc's";
}

}  // namespace
}  // namespace facet::data::test_batch_slots
