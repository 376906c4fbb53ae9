// Difficulty estimation and the curriculum samplers on hand-made feedback: normalisation and the
// loss EMA / fluctuation by hand; Mo-SCL batches holding both ends of the difficulty order (in every
// rank's slice); self-paced learning leaving the hardest out; state that resumes to the same orders;
// feedback whose order (one rank or several, any accumulation) does not change the state.
#include "core/config.h"
#include "curriculum/difficulty.h"
#include "curriculum/samplers.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace facet::curriculum::test_samplers {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<data::Sampler> make(const std::string& yaml, int64_t size, uint64_t seed = 7) {
  return data::sampler_registry().create(Config::parse(yaml), size, seed);
}

torch::Tensor longs(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); }
torch::Tensor doubles(const std::vector<double>& v) { return torch::tensor(v, torch::kDouble); }

// One "epoch" of feedback: sample i gets loss base[i] (+ jitter per visit for the fluctuation).
void feed_all(data::Sampler& s, int64_t size, const std::function<double(int64_t)>& loss) {
  std::vector<int64_t> idx(static_cast<size_t>(size));
  std::vector<double> l(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) idx[static_cast<size_t>(i)] = i, l[static_cast<size_t>(i)] = loss(i);
  s.feedback(longs(idx), doubles(l));
}

TEST(Difficulty, RankNormalisationSharesTiesAndLeavesUnknownInTheMiddle) {
  EXPECT_THAT(normalize_scores({3, 1, 2, 2, 9}, {true, true, true, true, false}, "rank"), ElementsAre(1.0, 0.0, 0.5, 0.5, 0.5));
  EXPECT_THAT(normalize_scores({0, 10, 5}, {true, true, true}, "minmax"), ElementsAre(0.0, 1.0, 0.5));
  EXPECT_THAT(normalize_scores({4, 4}, {true, true}, "minmax"), ElementsAre(0.5, 0.5));
  EXPECT_THAT(normalize_scores({4, 1}, {true, false}, "rank"), ElementsAre(0.5, 0.5)) << "one known value has no rank";
}

TEST(Difficulty, LossEmaAndFluctuationOverTheLastVisitsByHand) {
  DifficultyOptions o;
  o.momentum = 0.5;
  o.window = 3;
  DifficultyEstimator e(2, o);
  for (double l : {1.0, 3.0, 5.0, 7.0}) e.observe_losses(longs({0}), doubles({l}));
  e.observe_losses(longs({0, 1}), doubles({std::nan(""), 2.0}));  // a non-finite loss is ignored
  EXPECT_DOUBLE_EQ(e.loss_ema()[0], 5.25);                         // 1 -> 2 -> 3.5 -> 5.25
  EXPECT_EQ(e.visits(0), 4);
  std::vector<bool> known;
  const auto u = e.uncertainty(&known);
  EXPECT_NEAR(u[0], std::sqrt(8.0 / 3.0), 1e-12) << "population std of the last 3 losses 3, 5, 7";
  EXPECT_TRUE(known[0]);
  EXPECT_FALSE(known[1]) << "one visit gives no fluctuation";
  // Sample 0 is harder by loss; its uncertainty is known, sample 1's counts as the middle (0.5).
  EXPECT_THAT(e.difficulty(), ElementsAre(1.0 + 0.5, 0.0 + 0.5));
  EXPECT_THAT(test_support::message_of([&] { e.observe_losses(longs({2}), doubles({1})); }), HasSubstr("index 2 outside"));
}

TEST(Difficulty, UnknownOptionsAreRefusedByName) {
  EXPECT_THAT(test_support::message_of([] { make("{name: mo_scl, difficulty: {uncertainty: entropy}}", 4); }),
              HasSubstr("difficulty.uncertainty: expected loss_std, mc_dropout or none, got \"entropy\""));
  EXPECT_THAT(test_support::message_of([] { make("{name: mo_scl, difficulty: {normalize: zscore}}", 4); }),
              HasSubstr("expected rank or minmax"));
  EXPECT_THAT(test_support::message_of([] { make("{name: self_paced, difficulty: {uncertainty: loss_std}}", 4); }),
              HasSubstr("self_paced is the loss-only baseline"));
  EXPECT_THAT(test_support::message_of([] {
                auto s = std::dynamic_pointer_cast<CurriculumSampler>(make("{name: mo_scl}", 4));
                s->feedback_uncertainty(longs({0}), doubles({1}));
              }),
              HasSubstr("set it to mc_dropout"));
}

// 64 samples, loss = index: after one epoch of feedback, every global batch of 8 holds 4 of the 32
// easiest and 4 of the 32 hardest, interleaved (each of two ranks' slices of 4 holds 2 + 2), batch
// b pairing the b-th easiest run with the b-th hardest; the extreme pair shares one batch.
TEST(MoScl, EveryBatchHoldsBothEndsOfTheDifficultyOrder) {
  auto s = make("{name: mo_scl, difficulty: {uncertainty: none}}", 64);
  s->set_batch_size(8);
  const auto first = s->epoch_order(0);
  ASSERT_EQ(first.size(), 64u);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 64u) << "epoch 0: every sample once";
  feed_all(*s, 64, [](int64_t i) { return static_cast<double>(i); });
  const auto order = s->epoch_order(1);
  ASSERT_EQ(order.size(), 64u);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 64u);
  bool extremes_together = false;
  std::set<int64_t> pair_runs;
  for (size_t b = 0; b < 8; ++b) {
    std::vector<int64_t> batch(order.begin() + static_cast<int64_t>(b * 8), order.begin() + static_cast<int64_t>(b * 8 + 8));
    for (size_t j = 0; j < 8; ++j) EXPECT_EQ(batch[j] >= 32, j % 2 == 1) << "batch " << b << " place " << j << ": easy, hard, ...";
    const auto [lo, hi] = std::minmax_element(batch.begin(), batch.end());
    EXPECT_EQ(*lo / 4, (63 - *hi) / 4) << "batch " << b << " pairs the k-th easiest run with the k-th hardest";
    pair_runs.insert(*lo / 4);
    extremes_together |= (*lo == 0 && *hi == 63);
  }
  EXPECT_TRUE(extremes_together);
  EXPECT_EQ(pair_runs.size(), 8u);
  EXPECT_NE(s->epoch_order(2), order) << "the batches are shuffled per epoch";
}

TEST(MoScl, UncertaintyMovesSamplesAlongTheOrderAndHardFractionSetsTheMix) {
  auto s = make("{name: mo_scl, hard_fraction: 0.25, shuffle_batches: false, difficulty: {window: 2, momentum: 0}}", 16);
  s->set_batch_size(4);
  // Momentum 0: the loss is the last one, 1 for all; samples 0..3 fluctuated (3 then 1), the rest not.
  for (int v = 0; v < 2; ++v) feed_all(*s, 16, [&](int64_t i) { return i < 4 && v == 0 ? 3.0 : 1.0; });
  const auto& e = std::dynamic_pointer_cast<CurriculumSampler>(s)->estimator();
  const auto d = e.difficulty();
  for (int64_t i = 4; i < 16; ++i) EXPECT_LT(d[static_cast<size_t>(i)], d[0]) << "fluctuating samples are the hardest";
  const auto order = s->epoch_order(1);
  for (size_t b = 0; b < 4; ++b) {
    const int64_t hard_place = 3;  // 1 of 4 places hard, at the end of the batch
    EXPECT_LT(order[b * 4 + hard_place], 4) << "batch " << b << " ends with one of the fluctuating samples";
    for (size_t j = 0; j < 3; ++j) EXPECT_GE(order[b * 4 + j], 4);
  }
}

// Classical SPL (hard weights by a pace quantile): at epoch 1 (pace 0.5 -> 1 over 5 epochs: 0.6)
// the 40% hardest never appear; the epoch keeps its length by drawing the easy pool again.
TEST(SelfPaced, LeavesTheHardestOutUntilThePaceReachesThem) {
  auto s = make("{name: self_paced}", 50);
  s->set_batch_size(5);
  const auto first = s->epoch_order(0);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 50u) << "unseen samples are all drawn";
  feed_all(*s, 50, [](int64_t i) { return 100.0 - static_cast<double>(i); });  // sample 49 is the easiest
  const auto order = s->epoch_order(1);
  ASSERT_EQ(order.size(), 50u);
  const std::set<int64_t> used(order.begin(), order.end());
  EXPECT_EQ(used.size(), 30u);
  EXPECT_EQ(*used.begin(), 20) << "samples 0..19 (losses 100..81) are left out";
  const auto later = s->epoch_order(5);
  EXPECT_EQ(std::set<int64_t>(later.begin(), later.end()).size(), 50u) << "pace 1 at epoch 5";
}

// The state round-trips through JSON text (as the checkpoint stores it): a sampler restored from
// it gives the same orders as the one that kept running, and stays equal under further feedback.
TEST(CurriculumSamplers, StateResumesToTheSameOrders) {
  for (const std::string yaml : {"{name: mo_scl, pace: {start: 0.7, epochs: 3}}", "{name: self_paced}",
                                 "{name: mo_scl, difficulty: {uncertainty: mc_dropout, normalize: minmax}}"}) {
    auto a = make(yaml, 30), b = make(yaml, 30);
    a->set_batch_size(6), b->set_batch_size(6);
    feed_all(*a, 30, [](int64_t i) { return std::sin(static_cast<double>(i)) + 1.0; });
    feed_all(*a, 30, [](int64_t i) { return std::cos(static_cast<double>(i * i)) + 1.0; });
    if (yaml.find("mc_dropout") != std::string::npos)
      std::dynamic_pointer_cast<CurriculumSampler>(a)->feedback_uncertainty(longs({3, 4, 5}), doubles({0.1, 0.3, 0.2}));
    b->load_state(nlohmann::json::parse(a->state().dump()));
    EXPECT_EQ(a->epoch_order(2), b->epoch_order(2)) << yaml;
    for (auto* s : {a.get(), b.get()}) feed_all(*s, 30, [](int64_t i) { return 0.1 * static_cast<double>(i % 7); });
    EXPECT_EQ(a->epoch_order(3), b->epoch_order(3)) << yaml;
    EXPECT_EQ(a->state(), b->state()) << yaml;
  }
  auto small = make("{name: mo_scl}", 10);
  EXPECT_THAT(test_support::message_of([&] { small->load_state(make("{name: mo_scl}", 12)->state()); }),
              HasSubstr("saved difficulty state is for 12 samples"));
}

// Ranks receive the step's per-sample losses in rank order: one rank with two micro-batches sends
// [a0 a1 b0 b1], two ranks send [a0 b0 a1 b1]. The state (and so every later order) is the same,
// also when a paced epoch repeats a sample within one step.
TEST(CurriculumSamplers, StateDoesNotDependOnTheRankOrderOfTheFeedback) {
  auto one = make("{name: mo_scl}", 8), two = make("{name: mo_scl}", 8);
  one->set_batch_size(4), two->set_batch_size(4);
  const std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5, 6, 3};
  const std::vector<double> l = {1, 2, 3, 4, 5, 6, 7, 8};
  one->feedback(longs(idx), doubles(l));
  const std::vector<int64_t> idx2 = {0, 1, 3, 5, 2, 4, 6, 3};  // sample 3's two visits swapped too
  const std::vector<double> l2 = {1, 2, 8, 6, 3, 5, 7, 4};
  two->feedback(longs(idx2), doubles(l2));
  EXPECT_EQ(one->state(), two->state());
  EXPECT_EQ(one->epoch_order(1), two->epoch_order(1));
}

}  // namespace
}  // namespace facet::curriculum::test_samplers
