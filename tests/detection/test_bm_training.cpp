// Short trainings on the synthetic DeepLesion (`facet data synth deeplesion`) with each bounding-map
// switch (plain, +BM, +BMC, +BMC+ABM) through the trainer; each reports the FROC of the held-out test
// split at 0.5..16 FPs per image. The disabled BmTraining.DISABLED_SeedTable runs the four switches
// for FACET_BM_SEEDS seeds (default 3) and FACET_BM_STEPS steps and prints mean ± std per column:
//   build/tests/facet_detection_tests --gtest_also_run_disabled_tests --gtest_filter='BmTrainingTable.DISABLED_SeedTable'
// (FACET_BM_SWITCHES: a comma-separated list of rows; default plain,bm,bmc,bmc_abm).
#include "core/config.h"
#include "data/synth.h"
#include "tests/support/scratch.h"
#include "tests/support/synth_detector.h"
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>

namespace facet::train::test_bm_training {
namespace {

namespace fs = std::filesystem;

const char* kFps[] = {"0.5", "1", "2", "4", "8", "16"};

struct Switch {
  const char* name;
  const char* model;  // faster_rcnn or mask_rcnn
  const char* rpn;    // keys added to the rpn block
  const char* extra;  // further model keys
};
// bm_conditioned on the 24-wide level of the 96-px images (the reference: levels >= 100 wide).
const Switch kSwitches[] = {
    {"plain", "faster_rcnn", "", ""},
    {"bm", "faster_rcnn", ", objectness: bm", ""},
    {"bmc", "faster_rcnn", ", sampling: bmc, proposals: bm_conditioned, conditioned_min_width: 16", ""},
    {"bmc_abm", "mask_rcnn", ", sampling: bmc, proposals: bm_conditioned, conditioned_min_width: 16",
     "  mask: {convs: 1, channels: 16, output_size: 7, targets: abm}"},
    // BMC's two halves apart (table rows only: FACET_BM_SWITCHES=bmc_sampling,bm_proposals).
    {"bmc_sampling", "faster_rcnn", ", sampling: bmc", ""},
    {"bm_proposals", "faster_rcnn", ", proposals: bm_conditioned, conditioned_min_width: 16", ""},
};

const fs::path& synth_data() {
  static const fs::path data = [] {
    const fs::path d = test_support::scratch_dir("facet_bm", "synth");
    data::synth_registry().create(Config::parse("{name: deeplesion, patients: 25, slices: 12, size: 96, lesions_per_patient: 3, seed: 4}"), d);
    return d;
  }();
  return data;
}

struct TrainRun {
  std::map<std::string, double> before, after;
  double seconds = 0;
};

TrainRun train(const Switch& s, int seed, int steps, bool before = true) {
  test_support::SynthDetector d;
  d.root = synth_data();
  d.experiment = std::string("bm_synth_") + s.name;
  d.seed = seed;
  d.model = s.model;
  d.rpn = s.rpn;
  d.model_keys = s.extra;
  d.steps = steps;
  const Config config = test_support::synth_detector_config(d);
  const auto start = std::chrono::steady_clock::now();
  Trainer trainer(config, test_support::scratch_path("facet_bm", std::string("run_") + s.name), Mode::train);
  TrainRun r;
  if (before) r.before = trainer.evaluate();
  const RunResult result = trainer.fit();
  EXPECT_EQ(result.step, steps) << s.name;
  r.after = result.last_eval;  // the one evaluation, at the last step
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

class BmTraining : public ::testing::TestWithParam<int> {};

// Each switch trains through the trainer and reports a well-formed FROC curve on the held-out split
// (sensitivities in [0, 1], non-decreasing in the FP rate). Whether it learns, and how much, is what
// the seed table measures (400 steps; the plain detector's learning is asserted by
// tests/detection/test_deeplesion_training.cpp).
TEST_P(BmTraining, SwitchTrainsAndReportsFroc) {
  const Switch& s = kSwitches[GetParam()];
  // Few steps on small slices: this checks that the switch trains end to end and reports FROC (the
  // test budget is 60 s per test on a loaded 2-core machine), not how well.
  const TrainRun r = train(s, 1, 24, /*before=*/false);
  std::printf("%-8s", s.name);
  double last = 0;
  for (const char* fp : kFps) {
    const double v = test_support::overall_froc(r.after, std::string("sens@") + fp);
    std::printf(" sens@%s %.3f", fp, v);
    EXPECT_GE(v, last) << s.name << " @" << fp;
    EXPECT_LE(v, 1.0) << s.name << " @" << fp;
    last = v;
  }
  std::printf(" | mean %.3f (%.0f s)\n", test_support::overall_froc(r.after, "mean"), r.seconds);
  EXPECT_TRUE(std::isfinite(test_support::overall_froc(r.after, "mean")));
}

INSTANTIATE_TEST_SUITE_P(Switches, BmTraining, ::testing::Range(0, 4),
                         [](const ::testing::TestParamInfo<int>& info) { return std::string(kSwitches[info.param].name); });

TEST(BmTrainingTable, DISABLED_SeedTable) {
  const int seeds = std::getenv("FACET_BM_SEEDS") ? std::atoi(std::getenv("FACET_BM_SEEDS")) : 3;
  const int steps = std::getenv("FACET_BM_STEPS") ? std::atoi(std::getenv("FACET_BM_STEPS")) : 400;
  std::printf("synthetic DeepLesion test split, FROC sensitivity, mean ± std over %d seeds, %d steps\n%-8s", seeds, steps, "switch");
  for (const char* fp : kFps) std::printf(" | @%-11s", fp);
  std::printf(" | mean\n");
  const std::string only = std::getenv("FACET_BM_SWITCHES") ? std::getenv("FACET_BM_SWITCHES") : "plain,bm,bmc,bmc_abm";
  for (const auto& s : kSwitches) {
    if (("," + only + ",").find(std::string(",") + s.name + ",") == std::string::npos) continue;
    std::vector<std::vector<double>> cols(7);
    for (int seed = 1; seed <= seeds; ++seed) {
      const TrainRun r = train(s, seed, steps, /*before=*/false);
      for (int c = 0; c < 6; ++c) cols[static_cast<size_t>(c)].push_back(test_support::overall_froc(r.after, std::string("sens@") + kFps[c]));
      cols[6].push_back(test_support::overall_froc(r.after, "mean"));
    }
    std::printf("%-8s", s.name);
    for (const auto& v : cols) {
      double m = 0, q = 0;
      for (double x : v) m += x;
      m /= static_cast<double>(v.size());
      for (double x : v) q += (x - m) * (x - m);
      std::printf(" | %.3f ± %.3f", m, v.size() > 1 ? std::sqrt(q / static_cast<double>(v.size() - 1)) : 0.0);
    }
    std::printf("\n");
  }
}

}  // namespace
}  // namespace facet::train::test_bm_training
