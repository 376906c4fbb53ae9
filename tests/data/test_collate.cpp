// collate: sequences padded right or left with their masks and the ignore index, inner shapes that
// must agree, and every field and ragged key present in every sample (never a shifted list).
#include "data/dataset.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::data::test_collate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using test_support::message_of;

// A tokenised example of `n` tokens: ids 1..n, the loss on every token but the first (the prompt).
Sample tokens(const std::string& id, int64_t n) {
  Sample s;
  s.id = id;
  s.fields["input_ids"] = torch::arange(1, n + 1, torch::kInt64);
  torch::Tensor labels = torch::arange(1, n + 1, torch::kInt64);
  labels[0] = kIgnoreIndex;
  s.fields["labels"] = labels;
  s.fields["image"] = torch::zeros({1, 2, 2});
  return s;
}

const PaddingSpec kText = {{"input_ids", {.value = 0, .left = false, .mask = "attention_mask"}},
                           {"labels", {.value = static_cast<double>(kIgnoreIndex), .left = false, .mask = ""}}};

TEST(Collate, PadsSequencesOnTheRightWithAMask) {
  const Batch b = collate({tokens("a", 3), tokens("b", 1), tokens("c", 2)}, {7, 8, 9}, kText);
  EXPECT_TRUE(torch::equal(b.fields.at("input_ids"), torch::tensor({{1, 2, 3}, {1, 0, 0}, {1, 2, 0}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.fields.at("attention_mask"),
                           torch::tensor({{1, 1, 1}, {1, 0, 0}, {1, 1, 0}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.fields.at("labels"),
                           torch::tensor({{-100, 2, 3}, {-100, -100, -100}, {-100, 2, -100}}, torch::kInt64)));
  EXPECT_EQ(b.fields.at("image").sizes(), (std::vector<int64_t>{3, 1, 2, 2}));  // unpadded fields still stack
  EXPECT_TRUE(torch::equal(b.indices, torch::tensor({7, 8, 9}, torch::kInt64)));
  EXPECT_EQ(b.ids, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Collate, PadsOnTheLeftForGeneration) {
  PaddingSpec left = kText;
  for (auto& [name, p] : left) p.left = true;
  left["input_ids"].value = 5;  // a pad id that is not 0
  const Batch b = collate({tokens("a", 3), tokens("b", 1)}, {0, 1}, left);
  EXPECT_TRUE(torch::equal(b.fields.at("input_ids"), torch::tensor({{1, 2, 3}, {5, 5, 1}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.fields.at("attention_mask"), torch::tensor({{1, 1, 1}, {0, 0, 1}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.fields.at("labels"), torch::tensor({{-100, 2, 3}, {-100, -100, -100}}, torch::kInt64)));
}

// A dataset that writes its own attention mask pads it with 0; [T, D] fields pad whole rows.
TEST(Collate, PadsMasksAndMultiDimensionalFieldsWithoutAddingAMask) {
  auto make = [](const std::string& id, int64_t n) {
    Sample s;
    s.id = id;
    s.fields["attention_mask"] = torch::ones({n}, torch::kInt64);
    s.fields["embeddings"] = torch::full({n, 2}, static_cast<float>(n));
    return s;
  };
  const PaddingSpec spec = {{"attention_mask", {.value = 0, .left = false, .mask = ""}},
                            {"embeddings", {.value = -1, .left = false, .mask = ""}}};
  const Batch b = collate({make("a", 1), make("b", 2)}, {0, 1}, spec);
  EXPECT_EQ(b.fields.size(), 2u);
  EXPECT_TRUE(torch::equal(b.fields.at("attention_mask"), torch::tensor({{1, 0}, {1, 1}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.fields.at("embeddings"),
                           torch::tensor({{{1.f, 1.f}, {-1.f, -1.f}}, {{2.f, 2.f}, {2.f, 2.f}}})));
}

// The padded labels leave the loss what it is without the padding: cross-entropy with the ignore
// index over the batch equals the mean over the real target tokens alone.
TEST(Collate, IgnoreIndexKeepsPaddingOutOfTheLoss) {
  const Batch b = collate({tokens("a", 4), tokens("b", 2)}, {0, 1}, kText);
  torch::manual_seed(0);
  const int64_t vocab = 6;
  const torch::Tensor logits = torch::randn({2, 4, vocab});
  const torch::Tensor labels = b.fields.at("labels");
  namespace F = torch::nn::functional;
  const torch::Tensor padded = F::cross_entropy(logits.view({-1, vocab}), labels.view({-1}),
                                                F::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex));
  // Real targets: a's tokens 1..3 (labels 2, 3, 4), b's token 1 (label 2).
  const torch::Tensor real_logits = torch::cat({logits[0].slice(0, 1, 4), logits[1].slice(0, 1, 2)});
  const torch::Tensor real = F::cross_entropy(real_logits, torch::tensor({2, 3, 4, 2}, torch::kInt64));
  EXPECT_NEAR(padded.item<double>(), real.item<double>(), 1e-6);
  EXPECT_EQ((labels != kIgnoreIndex).sum().item<int64_t>(), 4);
}

TEST(Collate, PaddedFieldsMustAgreeBeyondTheFirstDimension) {
  Sample a, b;
  a.id = "a.json", b.id = "b.json";
  a.fields["embeddings"] = torch::zeros({3, 4});
  b.fields["embeddings"] = torch::zeros({2, 5});
  const PaddingSpec spec = {{"embeddings", {}}};
  EXPECT_THAT(message_of([&] { collate({a, b}, {0, 1}, spec); }),
              AllOf(HasSubstr("b.json: field \"embeddings\" has shape [2, 5] but a.json has [3, 4]"),
                    HasSubstr("only in its first dimension")));
  b.fields["embeddings"] = torch::zeros({2, 4}, torch::kInt64);
  EXPECT_THAT(message_of([&] { collate({a, b}, {0, 1}, spec); }),
              HasSubstr("b.json: field \"embeddings\" is Long but a.json has Float"));
  b.fields["embeddings"] = torch::zeros({});
  a.fields["embeddings"] = torch::zeros({});
  EXPECT_THAT(message_of([&] { collate({a, b}, {0, 1}, spec); }), HasSubstr("a.json: field \"embeddings\" is padded"));
  // Without padding, a length that differs is the old error, now pointing at padding too.
  a.fields["embeddings"] = torch::zeros({3});
  b.fields["embeddings"] = torch::zeros({2});
  EXPECT_THAT(message_of([&] { collate({a, b}, {0, 1}); }),
              HasSubstr("b.json: field \"embeddings\" has shape [2] but a.json has [3]; make it ragged, pad it"));
}

TEST(Collate, EverySampleHasEveryRaggedKeyAndField) {
  auto detection = [](const std::string& id, int64_t n) {
    Sample s;
    s.id = id;
    s.fields["image"] = torch::zeros({1, 4, 4});
    s.ragged["boxes"] = torch::zeros({n, 4});
    s.ragged["box_labels"] = torch::ones({n}, torch::kInt64);
    return s;
  };
  // Today's good case: ragged lists with one tensor per sample, in order.
  const Batch ok = collate({detection("a", 1), detection("b", 0), detection("c", 2)}, {0, 1, 2});
  ASSERT_EQ(ok.ragged.at("box_labels").size(), 3u);
  EXPECT_EQ(ok.ragged.at("box_labels")[2].size(0), 2);

  // The middle sample lacks box_labels: an error naming it, not a list of two that shifts c onto b.
  Sample missing = detection("b", 1);
  missing.ragged.erase("box_labels");
  EXPECT_THAT(message_of([&] { collate({detection("a", 1), missing, detection("c", 2)}, {0, 1, 2}); }),
              HasSubstr("b: sample has no ragged key \"box_labels\" that a has"));
  // The first sample is the one lacking it: still named.
  EXPECT_THAT(message_of([&] { collate({missing, detection("c", 2)}, {0, 1}); }),
              HasSubstr("b: sample has no ragged key \"box_labels\" that c has"));
  // The same for stacked fields, both ways.
  Sample extra = detection("d", 1);
  extra.fields["mask"] = torch::zeros({1, 4, 4});
  EXPECT_THAT(message_of([&] { collate({detection("a", 1), extra}, {0, 1}); }),
              HasSubstr("a: sample has no field \"mask\" that d has"));
  EXPECT_THAT(message_of([&] { collate({extra, detection("a", 1)}, {0, 1}); }),
              HasSubstr("a: sample has no field \"mask\" that d has"));
  EXPECT_THAT(message_of([&] { collate({detection("a", 1)}, {0, 1}); }), HasSubstr("1 samples but 2 indices"));
}

TEST(Collate, PerBoxFieldsHaveOneRowPerBox) {
  Sample s;
  s.id = "scan_07.png";
  s.fields["image"] = torch::zeros({1, 4, 4});
  s.ragged["boxes"] = torch::zeros({2, 4});
  s.ragged["box_labels"] = torch::ones({2}, torch::kInt64);
  s.ragged["box_types"] = torch::ones({3}, torch::kInt64);
  EXPECT_THAT(message_of([&] { collate({s}, {0}); }),
              HasSubstr("scan_07.png: collate: per-box field \"box_types\" has shape [3] for 2 boxes"));
  s.ragged.erase("boxes");
  EXPECT_THAT(message_of([&] { collate({s}, {0}); }),
              HasSubstr("scan_07.png: collate: per-box field \"box_labels\" but no \"boxes\""));
  EXPECT_TRUE(is_per_box("box_masks"));
  EXPECT_FALSE(is_per_box("boxes"));
  EXPECT_FALSE(is_per_box("landmarks"));
}

}  // namespace
}  // namespace facet::data::test_collate
