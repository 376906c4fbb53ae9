// Every experiments/bm config loads and builds its detector with the switch it names, and the
// bounding-map sweeps (experiments/ablations/bm_*.yaml) expand to the four rows of the papers' tables
// whose configs parse.
#include "core/config.h"
#include "models/detection/two_stage.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"
#include "train/sweep.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

namespace facet::models::detection::test_bm_configs {
namespace {

namespace fs = std::filesystem;
const fs::path kExperiments = fs::path(test_support::kSourceDir) / "experiments";

TEST(BmConfigs, EveryConfigLoadsAndBuildsWithItsSwitches) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(kExperiments / "bm")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    const std::string stem = entry.path().stem().string();
    SCOPED_TRACE(stem);
    const Config c = Config::load(entry.path());
    const Config m = c.at("model");
    const bool mask = m.get<std::string>("name") == "mask_rcnn";
    const auto o = TwoStageOptions::from(m, mask);
    const bool bmc = stem.find("_bmc") != std::string::npos, abm = stem.find("_abm") != std::string::npos;
    EXPECT_EQ(o.rpn.objectness, "bm");
    EXPECT_EQ(o.rpn.sampling, bmc ? "bmc" : "iou");
    EXPECT_EQ(o.rpn.proposals, bmc ? "bm_conditioned" : "topk");
    EXPECT_EQ(mask && o.mask.targets == "abm", abm);
    if (abm) {
      EXPECT_FALSE(c.has("data.masks") && c.get<std::string>("data.masks") == "grabcut");
    }
    // The base detector is unchanged: the SATr heads or torchvision's FPN ones.
    EXPECT_EQ(o.fpn, stem.rfind("faster_rcnn", 0) == 0);
    auto model = model_registry().create(m);
    EXPECT_NE(std::dynamic_pointer_cast<TwoStageDetector>(model), nullptr);
  }
  EXPECT_EQ(count, 9);
}

TEST(BmConfigs, SweepsExpandToTheAblationRows) {
  for (const char* name : {"bm_a3d_satr", "bm_a3d", "bm_faster_rcnn_r50_fpn_3slice"}) {
    SCOPED_TRACE(name);
    const auto plan = train::plan_sweep(kExperiments / "ablations" / (std::string(name) + ".yaml"),
                                        test_support::scratch_path("facet_bm", std::string("sweep_") + name));
    ASSERT_EQ(plan.runs.size(), 4u);
    std::set<std::string> targets;
    for (const auto& run : plan.runs) {
      const Config c = Config::load(plan.base_config, run.overrides);
      const Config m = c.at("model");
      const auto o = TwoStageOptions::from(m, m.get<std::string>("name") == "mask_rcnn");
      targets.insert(o.rpn.objectness + "/" + o.rpn.sampling + "/" + (o.with_mask ? o.mask.targets : "-"));
    }
    EXPECT_EQ(targets.size(), 4u);
    EXPECT_TRUE(targets.count("bm/bmc/abm"));
  }
}

}  // namespace
}  // namespace facet::models::detection::test_bm_configs
