// The curriculum samplers inside the trainer: a run interrupted mid-epoch resumes to the same
// batches; the MC-dropout hook's passes leave BatchNorm statistics and the training untouched while
// they feed the sampler; a face model (MGRR-Net) trains with mo_scl and the MC-dropout option.
#include "core/config.h"
#include "core/safetensors.h"
#include "curriculum/samplers.h"
#include "data/synth.h"
#include "core/file_io.h"
#include "tests/support/paths.h"
#include "tests/support/ranks.h"
#include "tests/support/scratch.h"
#include "train/distributed.h"
#include "train/hook.h"
#include "train/step.h"
#include "train/sweep.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

namespace facet::train::test_training {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Records every micro-batch's dataset indices; optionally fails once after step `crash_at`.
class BatchRecorder : public Hook {
 public:
  explicit BatchRecorder(int64_t crash_at = -1) : crash_at_(crash_at) {}
  std::string name() const override { return "batch_recorder"; }
  int priority() const override { return 95; }  // after the checkpoint of the step
  void before_micro_batch(Trainer&, const data::Batch& batch, int64_t) override {
    const torch::Tensor i = batch.indices.cpu().contiguous();
    batches.emplace_back(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel());
  }
  void after_step(Trainer& t, const StepResult&) override {
    if (t.state().step == crash_at_) fail("test crash at step {}", crash_at_);
  }
  std::vector<std::vector<int64_t>> batches;

 private:
  int64_t crash_at_;
};

Config shapes(const std::vector<std::string>& extra) {
  std::vector<std::string> o = {"train.log_every=1000", "data.workers=1", "train.threads=1", "data.eval_size=16",
                                "data.train_size=64", "data.batch_size=8", "train.eval_every=0"};
  o.insert(o.end(), extra.begin(), extra.end());
  return Config::load(test_support::source_path("experiments/demo/shapes.yaml"), o);
}

const curriculum::CurriculumSampler& curriculum_of(Trainer& t) {
  auto* s = dynamic_cast<curriculum::CurriculumSampler*>(&t.sampler());
  if (!s) fail("not a curriculum sampler");
  return *s;
}

// 8 batches per epoch, 20 steps; checkpoints every 3 steps; the broken run dies after step 11 and
// resumes from step 9 (one batch into epoch 1, whose order was checkpointed): the resumed run's
// batches are those of the straight run, through epoch 2, whose order comes from the restored state.
TEST(CurriculumTraining, MoSclResumedMidEpochGivesTheSameBatches) {
  const auto config = [] {
    return shapes({"train.max_steps=20", "train.checkpoint_every=3", "data.sampler={name: mo_scl, pace: {start: 0.8, epochs: 2}}"});
  };
  auto straight = std::make_shared<BatchRecorder>();
  std::string straight_state;
  {
    Trainer t(config(), test_support::scratch_path("facet_scl", "straight"));
    t.add_hook(straight);
    t.fit();
    straight_state = t.sampler().state().dump();
  }
  const fs::path run = test_support::scratch_path("facet_scl", "broken");
  {
    Trainer t(config(), run);
    t.add_hook(std::make_shared<BatchRecorder>(11));
    EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr("test crash at step 11"));
  }
  auto resumed = std::make_shared<BatchRecorder>();
  Trainer t(config(), run, Mode::resume);
  t.add_hook(resumed);
  t.fit();
  ASSERT_EQ(straight->batches.size(), 20u);
  ASSERT_EQ(resumed->batches.size(), 11u);
  for (size_t s = 0; s < 11; ++s) EXPECT_EQ(resumed->batches[s], straight->batches[9 + s]) << "step " << 10 + s;
  EXPECT_EQ(t.sampler().state().dump(), straight_state);
  // The pace (0.9 of the seen samples at epoch 1) left some samples out of epoch 1.
  std::set<int64_t> epoch1;
  for (size_t s = 8; s < 16; ++s) epoch1.insert(straight->batches[s].begin(), straight->batches[s].end());
  EXPECT_LT(epoch1.size(), 64u);
}

// Two Gloo ranks train with mo_scl for two epochs and a half, with the MC-dropout uncertainty (each
// rank scores its own slice; the hook gathers them) and with the loss fluctuation: both ranks'
// samplers end in the same state with the same epoch order, having learnt from every sample of every
// step. (The order a single rank reaches differs: BatchNorm normalises over each rank's slice, so
// the losses themselves differ; that the sampler's state does not depend on the number of ranks that
// deliver the same losses is CurriculumSamplers.StateDoesNotDependOnTheRankOrderOfTheFeedback.)
TEST(CurriculumTraining, TwoRanksAgree) {
  const auto config = [](bool mc) {
    Config c = shapes({"model.dropout=0.3", "data.train_size=32", "train.max_steps=10", "train.dist_timeout_s=60",
                       mc ? "data.sampler={name: mo_scl, difficulty: {uncertainty: mc_dropout}}" : "data.sampler={name: mo_scl}"});
    if (mc) c.set("hooks", "[{name: mc_dropout, passes: 3}]");
    return c;
  };
  const fs::path dir = test_support::scratch_dir("facet_scl", "ranks");
  // Each of the two runs rendezvouses on its own port: on a shared one, the rank that finishes the
  // first run early could reach the first run's store while the other rank still closes it, and wait
  // out the timeout (seen once under load: 62 s, failed).
  const int first_port = pick_free_port();
  int second_port = pick_free_port();
  while (second_port == first_port) second_port = pick_free_port();
  const auto codes = test_support::fork_ranks(2, first_port, dir, [&](int rank) {
    for (const bool mc : {true, false}) {
      ::setenv("MASTER_PORT", std::to_string(mc ? first_port : second_port).c_str(), 1);
      Trainer t(config(mc), dir / (mc ? "run_mc" : "run"));
      t.fit();
      nlohmann::json j = {{"state", t.sampler().state()}, {"order", t.loader().epoch_order()}};
      write_file_atomic(dir / fmt::format("rank{}{}.json", rank, mc ? "_mc" : ""), j.dump());
    }
  });
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << test_support::rank_errors(dir, 2);
  const auto load = [&](const std::string& name) { return nlohmann::json::parse(read_file(dir / name)); };
  const auto r0 = load("rank0.json"), r0_mc = load("rank0_mc.json");
  EXPECT_EQ(r0, load("rank1.json"));
  EXPECT_EQ(r0_mc, load("rank1_mc.json"));
  const auto known = r0_mc.at("state").at("difficulty").at("mc_known").get<std::vector<bool>>();
  EXPECT_EQ(std::count(known.begin(), known.end(), true), 32) << "every sample got an MC-dropout value from one rank or the other";
  const auto visits = r0.at("state").at("difficulty").at("visits").get<std::vector<int64_t>>();
  EXPECT_EQ(std::accumulate(visits.begin(), visits.end(), int64_t{0}), 80) << "10 steps of 8";
}

// Same seed, same sampler; one run with MC-dropout passes (4 per micro-batch) whose values carry no
// weight in the difficulty (weight 0): the weights and BatchNorm statistics equal the run without
// the hook, and the sampler did receive positive variances for the samples it saw.
TEST(CurriculumTraining, McDropoutHookLeavesBatchNormAndTrainingUntouched) {
  const auto config = [](bool hook) {
    Config c = shapes({"model.dropout=0.5", "train.max_steps=6",
                       "data.sampler={name: mo_scl, difficulty: {uncertainty: mc_dropout, weight: 0}}"});
    if (hook) c.set("hooks", "[{name: mc_dropout, passes: 4, every: 2}]");
    return c;
  };
  Trainer plain(config(false), test_support::scratch_path("facet_scl", "plain"));
  plain.fit();
  Trainer with_mc(config(true), test_support::scratch_path("facet_scl", "mc"));
  with_mc.fit();
  const auto a = safetensors::state_dict(plain.model()), b = safetensors::state_dict(with_mc.model());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  EXPECT_TRUE(with_mc.model().is_training());
  std::vector<bool> known;
  const auto u = curriculum_of(with_mc).estimator().uncertainty(&known);
  int64_t n = 0;
  for (size_t i = 0; i < u.size(); ++i)
    if (known[i]) {
      ++n;
      EXPECT_GT(u[i], 0) << "sample " << i;
    }
  EXPECT_EQ(n, 24) << "steps 1, 3 and 5 (every: 2) of 8 samples each, all distinct in epoch 0";
}

TEST(CurriculumTraining, McDropoutHookNeedsACurriculumSamplerWithThatUncertainty) {
  Config c = shapes({"train.max_steps=1"});
  c.set("hooks", "[{name: mc_dropout}]");
  Trainer t(c, test_support::scratch_path("facet_scl", "no_curriculum"));
  EXPECT_THAT(test_support::message_of([&] { t.fit(); }), HasSubstr("difficulty.uncertainty: mc_dropout"));
}

// Generic: MGRR-Net (a face AU model) trains with mo_scl on a synthetic BP4D, MC-dropout uncertainty
// through its own dropout; every trained sample was fed back, with a loss and an uncertainty. The
// loss is the demo's weighted BCE alone: its AU Dice term is a batch-level Dice (one value per label
// over the batch), which has no per-sample values, and the trainer refuses a curriculum without them.
TEST(CurriculumTraining, FaceModelTrainsWithMoScl) {
  const fs::path root = test_support::scratch_path("facet_scl", "bp4d");
  data::synth_registry().create(Config::parse("{name: bp4d, frames_per_sequence: 4, size: 64}"), root);
  Config config = Config::load(test_support::source_path("experiments/demo/mgrr_net_bp4d.yaml"),
                               {"data.root=" + root.string(), "data.transforms[0].size=56", "data.eval_transforms[0].size=56",
                                "train.max_steps=4", "train.eval_every=0", "train.log_every=1000", "model.dim=32", "data.batch_size=4",
                                "data.workers=1", "train.log_images=0",
                                "loss.terms=[{label: bce, weight: 1.0, loss: {name: weighted_bce, weights: auto}}]",
                                "data.sampler={name: mo_scl, difficulty: {uncertainty: mc_dropout}}"});
  config.set("hooks", "[{name: mc_dropout, passes: 3}]");
  Trainer trainer(std::move(config), test_support::scratch_path("facet_scl", "face_run"));
  const RunResult r = trainer.fit();
  EXPECT_EQ(r.step, 4);
  const auto& e = curriculum_of(trainer).estimator();
  std::vector<bool> known;
  const auto u = e.uncertainty(&known);
  int64_t seen = 0, with_u = 0;
  for (int64_t i = 0; i < e.size(); ++i) {
    if (e.visits(i) == 0) continue;
    ++seen;
    EXPECT_TRUE(std::isfinite(e.loss_ema()[static_cast<size_t>(i)]) && e.loss_ema()[static_cast<size_t>(i)] > 0);
    with_u += known[static_cast<size_t>(i)] && u[static_cast<size_t>(i)] > 0;
  }
  EXPECT_EQ(seen, 16);
  EXPECT_EQ(with_u, 16);
}

// The experiment configs build their samplers, and the sweeps expand to none / SCL / Mo-SCL over
// three seeds with samplers that build too.
TEST(CurriculumExperiments, ConfigsAndSweepsBuildTheirSamplers) {
  const fs::path dir = test_support::source_path("experiments");
  int configs = 0;
  for (const auto& entry : fs::directory_iterator(dir / "curriculum")) {
    const Config c = Config::load(entry.path());
    const auto sampler = data::sampler_registry().create(c.at("data.sampler"), 100, 0);
    EXPECT_NE(dynamic_cast<curriculum::CurriculumSampler*>(sampler.get()), nullptr) << entry.path();
    c.at("data.sampler").check_unused();
    ++configs;
  }
  EXPECT_EQ(configs, 6);
  for (const std::string det : {"a3d_satr", "a3d", "faster_rcnn_r50_fpn_3slice"}) {
    const SweepPlan plan = plan_sweep(dir / ("ablations/curriculum_" + det + ".yaml"), test_support::scratch_path("facet_scl", "sweep"));
    ASSERT_EQ(plan.runs.size(), 9u) << det;
    std::set<std::string> variants;
    for (const auto& run : plan.runs) {
      variants.insert(run.variant);
      const Config c = Config::load(plan.base_config, run.overrides);
      data::sampler_registry().create(c.at("data.sampler"), 100, 0);
    }
    EXPECT_EQ(variants, (std::set<std::string>{"none", "scl", "mo_scl"})) << det;
  }
}

}  // namespace
}  // namespace facet::train::test_training
