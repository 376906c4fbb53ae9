// Hooks and curriculum feedback: every hook point in priority order; per-sample losses gathered
// over micro-batches and ranks (batches of different sizes included) reaching Sampler::feedback; an
// adaptive sampler's order surviving a resume mid-epoch; MC-dropout passes from a hook that leave
// BatchNorm statistics, and therefore the training, untouched.
#include "core/file_io.h"
#include "core/safetensors.h"
#include "tests/support/ranks.h"
#include "tests/support/scratch.h"
#include "tests/train/toys.h"
#include "train/distributed.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace facet::train::test_hooks {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using toys::recording;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_hooks", name); }

std::vector<std::string> events_of(const std::string& label) {
  std::vector<std::string> out;
  for (const auto& e : recording().events)
    if (e.rfind(label + ": ", 0) == 0) out.push_back(e.substr(label.size() + 2));
  return out;
}

TEST(Hooks, RunAtEveryPointInPriorityOrder) {
  recording().clear();
  Config c = toys::shapes_experiment({"train.max_steps=4", "train.eval_every=2", "train.grad_accum=2", "data.batch_size=8",
                                      "data.train_size=64", "data.eval_size=16"});
  c.set("hooks", "[{name: recording, label: late, priority: 60}, {name: recording, label: early, priority: 5, per_sample: true}]");
  Trainer t(c, fresh_dir("order"));
  t.fit();
  const auto early = events_of("early");
  ASSERT_GE(early.size(), 10u);
  EXPECT_THAT(std::vector<std::string>(early.begin(), early.begin() + 6),
              ElementsAre("before_train", "before_micro 0 8", "after_micro 0 outputs=1 loss=true", "before_micro 1 8",
                          "after_micro 1 outputs=1 loss=true", "step 1 applied=true per_sample=16"));
  EXPECT_EQ(early.back(), "after_train") << "the last step is evaluated after the step, not at the end";
  // Hook by hook in priority order at each point: early (5) before the evaluation (30), before
  // late (60), before the checkpoint (90); the evaluation at step 2 sits between.
  const auto& all = recording().events;
  const auto at = [&](const std::string& e) { return std::find(all.begin(), all.end(), e) - all.begin(); };
  EXPECT_LT(at("early: step 2 applied=true per_sample=16"), at("early: before_eval"));
  EXPECT_LT(at("early: before_eval"), at("late: before_eval"));
  EXPECT_LT(at("late: after_eval"), at("late: step 2 applied=true per_sample=16"));
  EXPECT_EQ(events_of("late")[5], "step 1 applied=true per_sample=16") << "per-sample values reach every hook once asked for";
}

// Feedback on one rank: every step's indices are the step's samples of the epoch's order (two
// micro-batches of 8), with their cross-entropy losses; the order adapts to the losses it was fed.
TEST(Hooks, SamplerReceivesEveryStepsSamplesAndLosses) {
  recording().clear();
  Config c = toys::shapes_experiment({"data.train_size=40", "data.batch_size=8", "train.grad_accum=2", "train.max_steps=6",
                                      "train.eval_every=0", "data.sampler={name: recording}", "loss.label_smoothing=0.0"});
  Trainer t(c, fresh_dir("feedback"));
  t.fit();
  const auto& r = recording();
  ASSERT_EQ(r.feedback.size(), 6u);
  ASSERT_GE(r.orders.size(), 3u);
  for (size_t s = 0; s < 6; ++s) {
    const auto& order = r.orders[s / 2];  // 40 samples: 5 batches of 8, 2 steps of 2 batches per epoch
    const std::vector<int64_t> expected(order.begin() + static_cast<int64_t>(s % 2) * 16,
                                        order.begin() + static_cast<int64_t>(s % 2 + 1) * 16);
    EXPECT_EQ(r.feedback[s].at("indices").get<std::vector<int64_t>>(), expected) << "step " << s + 1;
    EXPECT_EQ(r.feedback[s].at("batch").get<int64_t>(), 8) << "the sampler was told the global batch";
    for (double l : r.feedback[s].at("losses").get<std::vector<double>>()) EXPECT_TRUE(l >= 0 && std::isfinite(l));
  }
  // Epoch 1's order puts the sample with the highest loss of epoch 0 first.
  int64_t worst = -1;
  double highest = -1;
  for (size_t s = 0; s < 2; ++s) {
    const auto idx = r.feedback[s].at("indices").get<std::vector<int64_t>>();
    const auto losses = r.feedback[s].at("losses").get<std::vector<double>>();
    for (size_t i = 0; i < idx.size(); ++i)
      if (losses[i] > highest) highest = losses[i], worst = idx[i];
  }
  EXPECT_EQ(r.orders[1].front(), worst);
}

// Two ranks, one of which loses a sample (on_error: skip): the recording sampler of each rank
// receives every rank's indices and losses — the same values on both, 15 for the step that lost one.
TEST(Hooks, FeedbackIsGatheredOverRanksWithUnequalBatches) {
  const fs::path dir = test_support::scratch_dir("facet_hooks", "two_ranks");
  const int port = pick_free_port();
  const auto codes = test_support::fork_ranks(2, port, dir, [&](int rank) {
    recording().clear();
    Config c = toys::shapes_experiment({"data.name=flaky_shapes", "data.fail=[5]", "data.on_error=skip",
                                        "data.sampler={name: recording}", "data.train_size=32", "data.batch_size=16",
                                        "train.max_steps=2", "train.eval_every=0", "train.dist_timeout_s=60",
                                        "data.workers=1"});
    c.set("hooks", "[{name: recording, per_sample: true}]");
    Trainer t(c, dir / "run");
    t.fit();
    toys::save_recording(dir / fmt::format("rank{}.json", rank));
  });
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << test_support::rank_errors(dir, 2);
  const auto r0 = nlohmann::json::parse(read_file(dir / "rank0.json")), r1 = nlohmann::json::parse(read_file(dir / "rank1.json"));
  ASSERT_EQ(r0.at("feedback").size(), 2u);
  EXPECT_EQ(r0.at("feedback"), r1.at("feedback")) << "every rank's sampler learns the same";
  std::vector<size_t> sizes;
  std::set<int64_t> seen;
  for (const auto& f : r0.at("feedback")) {
    const auto idx = f.at("indices").get<std::vector<int64_t>>();
    sizes.push_back(idx.size());
    seen.insert(idx.begin(), idx.end());
  }
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<size_t>{15, 16}));
  EXPECT_EQ(seen.size(), 31u);
  EXPECT_FALSE(seen.count(5)) << "the lost sample sends no feedback";
  // The order of epoch 0 is the same on both ranks, and each rank's micro-batch was its half.
  EXPECT_EQ(r0.at("orders")[0], r1.at("orders")[0]);
}

// A run with an adaptive sampler that crashes after step `crash_at` and resumes from its checkpoint
// of step `resumes_from` feeds the sampler exactly what the uninterrupted run fed it.
void expect_adaptive_order_resumes_exactly(const std::string& name, int64_t max_steps, int64_t checkpoint_every,
                                           int64_t crash_at, int64_t resumes_from) {
  const auto config = [&](int64_t crash) {
    Config c = toys::shapes_experiment({"data.train_size=64", "data.batch_size=8", "train.eval_every=0",
                                        "data.sampler={name: recording}", fmt::format("train.max_steps={}", max_steps),
                                        fmt::format("train.checkpoint_every={}", checkpoint_every)});
    c.set("hooks", fmt::format("[{{name: recording, label: crash, priority: 95, crash_at_step: {}}}]", crash));
    return c;
  };
  recording().clear();
  {
    Trainer t(config(-1), fresh_dir(name + "_straight"));
    t.fit();
  }
  const auto straight = recording().feedback;
  recording().clear();
  const fs::path run = fresh_dir(name + "_broken");
  {
    Trainer t(config(crash_at), run);
    EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr(fmt::format("toy crash at step {}", crash_at)));
  }
  const auto before = recording().feedback;
  recording().clear();
  {
    Trainer t(config(crash_at), run, Mode::resume);
    t.fit();
  }
  EXPECT_GE(recording().orders.size(), 1u);
  auto resumed = before;
  ASSERT_EQ(before.size(), static_cast<size_t>(crash_at));
  resumed.resize(static_cast<size_t>(resumes_from));  // the steps after the checkpoint run again
  for (const auto& f : recording().feedback) resumed.push_back(f);
  ASSERT_EQ(resumed.size(), straight.size());
  for (size_t s = 0; s < straight.size(); ++s) EXPECT_EQ(resumed[s], straight[s]) << "step " << s + 1;
}

// Checkpoints every 3 steps, the crash at step 3: the resume continues epoch 0 in the order the
// sampler drew for it from feedback it has since moved past.
TEST(Hooks, AdaptiveSamplerOrderSurvivesAResumeMidEpoch) { expect_adaptive_order_resumes_exactly("mid_epoch", 12, 3, 3, 3); }

// A checkpoint at the end of epoch 0 (8 batches), the crash at step 9: the resume draws epoch 1's
// order from the sampler state saved with it, as the uninterrupted run did, not epoch 0's again.
TEST(Hooks, AdaptiveSamplerOrderAfterAResumeAtAnEpochsEndIsTheNextEpochs) {
  expect_adaptive_order_resumes_exactly("epoch_end", 16, 0, 9, 8);
}

// A hook that runs MC-dropout passes after each micro-batch (no gradients, only dropout in training
// mode) changes nothing in the training: the weights and BatchNorm statistics equal a run without it.
class McDropoutHook : public Hook {
 public:
  std::string name() const override { return "mc_dropout"; }
  void after_micro_batch(Trainer& trainer, const MicroBatch& micro) override {
    torch::NoGradGuard no_grad;
    models::DropoutOnlyTraining mode(trainer.model());
    EXPECT_EQ(mode.dropout_modules(), 1);
    std::vector<torch::Tensor> passes;
    for (int i = 0; i < 4; ++i) passes.push_back(trainer.model().forward(micro.batch).at("logits"));
    spread += torch::stack(passes).std(0).mean().item<double>();
  }
  double spread = 0;
};

TEST(Hooks, McDropoutPassesLeaveBatchNormAndTrainingUntouched) {
  const auto config = [] {
    return toys::shapes_experiment({"model.dropout=0.5", "train.max_steps=6", "train.eval_every=0", "data.train_size=64"});
  };
  Trainer plain(config(), fresh_dir("plain"));
  plain.fit();
  Trainer with_mc(config(), fresh_dir("mc"));
  auto hook = std::make_shared<McDropoutHook>();
  with_mc.add_hook(hook);
  with_mc.fit();
  EXPECT_GT(hook->spread, 1e-4) << "dropout was active in the extra passes";
  const auto a = safetensors::state_dict(plain.model()), b = safetensors::state_dict(with_mc.model());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  EXPECT_TRUE(with_mc.model().is_training());
}

}  // namespace
}  // namespace facet::train::test_hooks
