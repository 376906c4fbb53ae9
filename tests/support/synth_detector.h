// The small detector on a synthetic DeepLesion (`facet data synth deeplesion`) that the detection,
// bounding-map and curriculum tests and the lesion-switch benchmark train through the Trainer: one
// config, so that their figures are comparable, and the FROC lookup their assertions share.
#pragma once

#include "core/config.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

namespace facet::test_support {

struct SynthDetector {
  std::filesystem::path root;        // the synthetic DeepLesion
  std::string experiment = "synth_detector";
  int64_t seed = 1;
  std::string model = "faster_rcnn";  // or mask_rcnn
  std::string backbone = "{name: test_tiny_stride4, in_channels: 3}";
  std::string rpn;                    // keys appended to the rpn block: ", objectness: bm"
  std::string model_keys;             // further model keys, each on its own line indented by two spaces
  std::string sampler = "{name: random}";
  double lr = 2.0e-3;
  int64_t steps = 400;
  int64_t eval_every = 0;             // 0: one evaluation, after the last step
  bool evaluate = true;               // false: no metrics, no evaluation (benchmarks)
  std::string eval_split = "test";
  int64_t threads = 2;
  std::string extra;                  // further top-level YAML (hooks: ...)
};

inline Config synth_detector_config(const SynthDetector& d) {
  return Config::parse(fmt::format(R"(
experiment: {experiment}
seed: {seed}
data:
  name: deeplesion
  root: {root}
  num_slices: 3
  transforms: [{{name: ct_window, preset: mediastinum}}]
  eval_transforms: [{{name: ct_window, preset: mediastinum}}]
  eval_split: {eval_split}
  batch_size: 2
  workers: 1
  sampler: {sampler}
model:
  name: {model}
  backbone: {backbone}
  rpn: {{feat_channels: 32, pre_nms_train: 2000, post_nms_train: 500, pre_nms_test: 1000, post_nms_test: 100{rpn}}}
  roi: {{fc: 64}}
{model_keys}
step: {{name: model_losses}}
{metrics}
optim: {{name: adam, lr: {lr}}}
train: {{max_steps: {steps}, eval_every: {eval_every}, log_every: 1000, checkpoint_every: 100000, threads: {threads}}}
{extra}
)",
                                   fmt::arg("experiment", d.experiment), fmt::arg("seed", d.seed), fmt::arg("root", d.root.string()),
                                   fmt::arg("eval_split", d.eval_split), fmt::arg("sampler", d.sampler), fmt::arg("model", d.model),
                                   fmt::arg("backbone", d.backbone), fmt::arg("rpn", d.rpn), fmt::arg("model_keys", d.model_keys),
                                   fmt::arg("metrics", d.evaluate ? "metrics: [{name: froc}]" : ""), fmt::arg("lr", d.lr), fmt::arg("steps", d.steps),
                                   fmt::arg("eval_every", d.eval_every > 0 ? d.eval_every : d.steps),
                                   fmt::arg("threads", d.threads), fmt::arg("extra", d.extra)));
}

// The overall FROC value `name` ("sens@4", "mean", "ap50") of an evaluation's metrics, whatever the
// split prefix; not a per-lesion-type or per-thickness view.
inline double overall_froc(const std::map<std::string, double>& metrics, const std::string& name) {
  const std::string suffix = "/froc/" + name;
  for (const auto& [key, value] : metrics)
    if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        key.find('/') == key.size() - suffix.size())
      return value;
  throw std::runtime_error("no metric <split>" + suffix + " in the evaluation");
}

}  // namespace facet::test_support
