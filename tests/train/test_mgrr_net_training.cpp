// MGRR-Net end to end: trained through the Trainer on a synthetic BP4D (drawn faces in the published
// layout) for fold 1, its mean AU F1 on the held-out subjects beats the all-positive baseline, and
// the labelled prediction picture is written. Reduced configuration (the demo's) for CPU time.
#include "core/config.h"
#include "data/synth.h"
#include "tests/support/paths.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::train::test_mgrr_net_training {
namespace {

namespace fs = std::filesystem;

TEST(MGRRNetTraining, BeatsTheAllPositiveBaselineOnHeldOutSyntheticSubjects) {
  const fs::path root = fs::temp_directory_path() / ("facet_mgrr_bp4d_" + std::to_string(::getpid()));
  fs::remove_all(root);
  data::synth_registry().create(Config::parse("{name: bp4d, frames_per_sequence: 10, size: 112}"), root);
  const fs::path run = root.string() + "_run";
  fs::remove_all(run);
  Config config = Config::load(test_support::source_path("experiments/demo/mgrr_net_bp4d.yaml"),
                               {"data.root=" + root.string(), "data.transforms[0].size=96", "data.eval_transforms[0].size=96",
                                "train.max_steps=150", "train.eval_every=150", "train.log_every=1000", "model.dim=64",
                                "train.log_images=6"});
  Trainer trainer(std::move(config), run, Mode::train);
  const RunResult result = trainer.fit();
  const double f1 = result.last_eval.at("test/f1/mean"), baseline = result.last_eval.at("test/f1_all_positive/mean");
  std::printf("MGRR-Net, synthetic BP4D fold 1 (2 held-out subjects): mean AU F1 %.3f, all-positive %.3f\n", f1, baseline);
  EXPECT_GT(f1, baseline + 0.1);
  EXPECT_TRUE(fs::exists(run / "visuals/test_labels_step150.png"));
}

}  // namespace
}  // namespace facet::train::test_mgrr_net_training
