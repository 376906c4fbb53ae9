// Faster R-CNN trained through the trainer (step model_losses, metric froc) on a synthetic DeepLesion
// (`facet data synth deeplesion`: lesions visible on the key slice and its neighbours): sensitivity
// at 4 FPs per image on the held-out test split far above the untrained model's.
#include "core/config.h"
#include "data/synth.h"
#include "tests/support/scratch.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

namespace facet::train {
namespace {

namespace fs = std::filesystem;

double value_ending(const std::map<std::string, double>& m, const std::string& suffix) {
  for (const auto& [k, v] : m)
    if (k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0 && k.find("thick") == std::string::npos)
      return v;
  ADD_FAILURE() << "no key ending in " << suffix;
  return -1;
}

TEST(DeepLesionTraining, FasterRcnnBeatsTheUntrainedModelOnHeldOutImages) {
  const fs::path data = test_support::scratch_dir("facet_det", "synth");
  data::synth_registry().create(Config::parse("{name: deeplesion, patients: 25, slices: 12, size: 96, lesions_per_patient: 3, seed: 4}"), data);
  Config config = Config::parse(fmt::format(R"(
experiment: det_synth
seed: 1
data:
  name: deeplesion
  root: {}
  num_slices: 3
  transforms: [{{name: ct_window, preset: mediastinum}}]
  eval_transforms: [{{name: ct_window, preset: mediastinum}}]
  eval_split: test
  batch_size: 2
  workers: 1
model:
  name: faster_rcnn
  backbone: {{name: test_tiny_stride4, in_channels: 3}}
  rpn: {{feat_channels: 32, pre_nms_train: 2000, post_nms_train: 500, pre_nms_test: 1000, post_nms_test: 100}}
  roi: {{fc: 64}}
step: {{name: model_losses}}
metrics: [{{name: froc}}]
optim: {{name: adam, lr: 2.0e-3}}
train: {{max_steps: 400, eval_every: 0, log_every: 50, threads: 2}}
)", data.string()));
  const auto start = std::chrono::steady_clock::now();
  Trainer trainer(config, test_support::scratch_path("facet_det", "run"), Mode::train);
  const auto before = trainer.evaluate();
  const RunResult result = trainer.fit();
  const auto after = trainer.evaluate();
  const double s0 = value_ending(before, "froc/sens@4"), s1 = value_ending(after, "froc/sens@4");
  std::printf("synthetic DeepLesion test split: sens@4FP untrained %.3f, trained %.3f; FROC mean %.3f -> %.3f; AP50 %.3f (%.0f s)\n", s0,
              s1, value_ending(before, "froc/mean"), value_ending(after, "froc/mean"), value_ending(after, "froc/ap50"),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  EXPECT_EQ(result.step, 400);
  EXPECT_GT(s1, 0.6);
  EXPECT_GT(s1, s0 + 0.4);
}

}  // namespace
}  // namespace facet::train
