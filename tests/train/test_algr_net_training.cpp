// ALGRNet trained by the Trainer from its experiment configs on synthetic data in the published
// layouts: a BP4D fold (mean AU F1 against the all-positive baseline of the eval labels) and a palsy
// set (accuracy against the majority class of the eval labels). Reduced for CPU test time (ResNet-18
// trunk, dim 64, 96 px frames aligned to 80 and cropped to 72, a few epochs); the architecture, loss,
// transforms and optimiser are the configs'. Also: every ALGRNet config builds a Trainer (all keys
// read) and the sweeps expand to the folds and variants.
#include "core/config.h"
#include "data/face/au.h"
#include "data/pack.h"
#include "data/synth.h"
#include "models/face/au_regions.h"
#include "tests/models/face_batch.h"
#include "tests/support/paths.h"
#include "train/sweep.h"
#include "train/trainer.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>

namespace facet::train::test_algr_net_training {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) { return test_support::scratch_path("facet_algr_training", name); }

fs::path synth(const std::string& name, const std::string& options) {
  const fs::path root = fresh_dir(name + "_data");
  data::synth_registry().create(Config::parse(options), root);
  return root;
}

// Default writer subjects: two of each BP4D part, so fold 1 trains on 4 subjects and tests on 2.
const fs::path& bp4d_root() {
  static const fs::path root = synth("bp4d", "{name: bp4d, frames_per_sequence: 8, size: 96}");
  return root;
}

const std::string kExperiments = test_support::source_path("experiments/");

// The CPU reduction shared by the training runs.
std::vector<std::string> reduced(const fs::path& root, std::vector<std::string> extra) {
  std::vector<std::string> o = {"data.root=" + root.string(),  "data.workers=2",       "train.log_every=1000",
                                "model.backbone_depth=18",     "model.dim=64",         "data.transforms[0].size=80",
                                "data.transforms[1].size=72",  "data.eval_transforms[0].size=80",
                                "data.eval_transforms[1].size=72",
                                "train.eval_every=1000000"};  // one evaluation, at the end
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(ALGRNetTraining, SyntheticBp4dFoldBeatsTheAllPositiveBaseline) {
  const Config config = Config::load(kExperiments + "algr_net/bp4d_fold1.yaml",
                                     reduced(bp4d_root(), {"train.max_epochs=8", "schedule.step_epochs=6"}));
  // 8 epochs: measured mean F1 0.478 / 0.590 / 0.601 for seeds 0 / 1 / 2 (6 epochs gave 0.368 to 0.496,
  // too close to the bar for a test that must not depend on the seed's luck).
  // The all-positive predictor's F1 per AU is 2p / (1 + p) at positive rate p of the eval labels.
  const auto eval = data::open_dataset(config.at("data"), "test");
  const auto& labels = dynamic_cast<const data::face::AuLabelSource&>(*eval);
  const torch::Tensor p = (labels.all_labels() * labels.all_label_masks()).sum(0) / labels.all_label_masks().sum(0);
  const double all_positive = (2 * p / (1 + p)).mean().item<double>();

  const auto start = std::chrono::steady_clock::now();
  Trainer trainer(config, fresh_dir("bp4d_run"), Mode::train);
  const RunResult result = trainer.fit();
  const double f1 = result.last_eval.at("test/f1/mean");
  std::printf("ALGRNet on synthetic BP4D fold 1 (%lld test frames): mean AU F1 %.3f vs all-positive %.3f, %.0f s\n",
              static_cast<long long>(eval->size()), f1, all_positive, seconds_since(start));
  EXPECT_GT(f1, all_positive + 0.1);

  // The adaptive regions have left JAA-Net's placement (their last layer started at zero) and resized.
  torch::NoGradGuard no_grad;
  trainer.model().eval();
  const data::Batch b = testing::drawn_face_batch(4, 72);
  const TensorDict out = trainer.model().forward(b);
  const std::vector<int> aus(data::face::kBp4dAus.begin(), data::face::kBp4dAus.end());
  const torch::Tensor jaa = models::face::au_centres(b.fields.at("landmarks"), aus).view({4, 24, 2});
  const double shift = (out.at("region_centres") - jaa).norm(2, -1).mean().item<double>();
  const double scale = (out.at("region_sides") / (0.25 * 72)).log().abs().mean().exp().item<double>();
  std::printf("learned regions: mean shift %.2f px from the landmark centres, side x/÷ %.3f of 18 px\n", shift, scale);
  // Seen: 0.09 px and 1.083 after these 96 steps (the sides move first: a unit of the last layer's
  // output shifts a region by up to 7.2 px but its gradient starts small).
  EXPECT_GT(shift, 0.02);
  EXPECT_GT(scale, 1.02);
}

TEST(ALGRNetTraining, SyntheticPalsyGradesBeatTheMajorityClass) {
  // 96 subjects, 3 grades: 72 train and 24 test subjects (8 per grade), 2 images each. With fewer,
  // more photographed subjects (27 x 4) the model learns who has which grade, not the droop: 0.33.
  const fs::path root =
      synth("palsy", "{name: palsy, subjects: 96, images_per_subject: 2, size: 96, grades: 3, splits: [train, train, train, test]}");
  const Config config =
      Config::load(kExperiments + "algr_net/palsy.yaml",
                   reduced(root, {"data.grades=3", "model.palsy_grades=3", "metrics[0].num_classes=3", "data.eval_split=test",
                                  "train.best_metric=test/accuracy", "train.max_epochs=16", "schedule.step_epochs=12"}));
  const auto eval = data::open_dataset(config.at("data"), "test");
  torch::Tensor counts = torch::zeros({3}, torch::kLong);
  for (int64_t i = 0; i < eval->size(); ++i) counts[eval->get(i, 0).fields.at("label").item<int64_t>()] += 1;
  const double majority = counts.max().item<double>() / static_cast<double>(eval->size());

  const auto start = std::chrono::steady_clock::now();
  Trainer trainer(config, fresh_dir("palsy_run"), Mode::train);
  const RunResult result = trainer.fit();
  const double accuracy = result.last_eval.at("test/accuracy");
  std::printf("ALGRNet on synthetic palsy (%lld test images, 3 grades): accuracy %.3f vs majority class %.3f, %.0f s\n",
              static_cast<long long>(eval->size()), accuracy, majority, seconds_since(start));
  EXPECT_GT(accuracy, majority + 0.2);
}

TEST(ALGRNetConfigs, EveryConfigBuildsATrainerAndTheSweepsExpand) {
  const fs::path disfa = synth("disfa", "{name: disfa, frames_per_subject: 30, size: 64}");
  const fs::path palsy = synth("palsy_small", "{name: palsy, subjects: 30, images_per_subject: 1, size: 64}");  // 5 per grade
  // The paper configurations as written (ResNet-50, dim 256), only the data roots changed; building
  // the Trainer opens both splits and fails on any key nobody reads.
  for (int fold = 1; fold <= 3; ++fold) {
    for (const auto& [file, root] : {std::pair{fmt::format("algr_net/bp4d_fold{}.yaml", fold), bp4d_root()},
                                     std::pair{fmt::format("algr_net/disfa_fold{}.yaml", fold), disfa}}) {
      const Config c = Config::load(kExperiments + file, {"data.root=" + root.string(), "data.workers=0"});
      EXPECT_EQ(c.get<int>("data.fold"), fold) << file;
      EXPECT_NO_THROW(Trainer(c, fresh_dir("config"), Mode::check)) << file;
    }
  }
  // DISFA's pipeline (its 8 AUs, class weights, transforms) runs end to end, reduced, for two steps.
  {
    Trainer t(Config::load(kExperiments + "algr_net/disfa_fold2.yaml", reduced(disfa, {"train.max_steps=2"})), fresh_dir("disfa_run"),
              Mode::train);
    const RunResult r = t.fit();
    EXPECT_EQ(r.step, 2);
    EXPECT_TRUE(r.last_eval.contains("test/f1/AU26"));
  }
  const Config p = Config::load(kExperiments + "algr_net/palsy.yaml", {"data.root=" + palsy.string(), "data.workers=0"});
  EXPECT_EQ(p.get<int>("model.palsy_grades"), 6);
  EXPECT_NO_THROW(Trainer(p, fresh_dir("config"), Mode::check));

  const SweepPlan folds = plan_sweep(kExperiments + "algr_net/bp4d_3fold.yaml", fresh_dir("sweep"));
  ASSERT_EQ(folds.runs.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(folds.runs[static_cast<size_t>(i)].replicate, fmt::format("data.fold={}", i + 1));
  EXPECT_EQ(folds.metrics.size(), 13u);
  const SweepPlan modules = plan_sweep(kExperiments + "ablations/algr_net_modules.yaml", fresh_dir("sweep"));
  ASSERT_EQ(modules.runs.size(), 12u);
  std::set<std::string> variants;
  for (const auto& r : modules.runs) variants.insert(r.variant);
  EXPECT_EQ(variants, (std::set<std::string>{"full", "no_adaptive_regions", "no_skip_bilstm", "no_fusion"}));
}

}  // namespace
}  // namespace facet::train::test_algr_net_training
