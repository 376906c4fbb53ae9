// Faster R-CNN trained through the trainer (step model_losses, metric froc) on a synthetic DeepLesion
// (`facet data synth deeplesion`: lesions visible on the key slice and its neighbours): sensitivity
// at 4 FPs per image on the held-out test split far above the untrained model's.
#include "core/config.h"
#include "data/synth.h"
#include "tests/support/scratch.h"
#include "tests/support/synth_detector.h"
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <chrono>

namespace facet::train::test_deeplesion_training {
namespace {

namespace fs = std::filesystem;

TEST(DeepLesionTraining, FasterRcnnBeatsTheUntrainedModelOnHeldOutImages) {
  const fs::path data = test_support::scratch_dir("facet_det", "synth");
  data::synth_registry().create(Config::parse("{name: deeplesion, patients: 25, slices: 12, size: 96, lesions_per_patient: 3, seed: 4}"), data);
  test_support::SynthDetector d;
  d.root = data;
  d.experiment = "det_synth";
  const Config config = test_support::synth_detector_config(d);
  const auto start = std::chrono::steady_clock::now();
  Trainer trainer(config, test_support::scratch_path("facet_det", "run"), Mode::train);
  const auto before = trainer.evaluate();
  const RunResult result = trainer.fit();
  const auto& after = result.last_eval;  // the one evaluation, after the last step
  const double s0 = test_support::overall_froc(before, "sens@4"), s1 = test_support::overall_froc(after, "sens@4");
  std::printf("synthetic DeepLesion test split: sens@4FP untrained %.3f, trained %.3f; FROC mean %.3f -> %.3f; AP50 %.3f (%.0f s)\n", s0,
              s1, test_support::overall_froc(before, "mean"), test_support::overall_froc(after, "mean"), test_support::overall_froc(after, "ap50"),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  EXPECT_EQ(result.step, 400);
  EXPECT_GT(s1, 0.6);
  EXPECT_GT(s1, s0 + 0.4);
}

}  // namespace
}  // namespace facet::train::test_deeplesion_training
