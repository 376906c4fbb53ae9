// The small detector on a synthetic DeepLesion (`facet data synth deeplesion`) that the detection,
// bounding-map and curriculum tests and the lesion-switch benchmark train through the Trainer: one
// config, so that their figures are comparable, and the FROC lookup their assertions share.
#pragma once

#include "core/config.h"
#include "models/backbones/backbone.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace facet::test_support {

// A backbone small enough to train a detector in seconds, with the channel dropout MC dropout needs:
// three convolutions (two of stride 2), one stride-4 map "c4"; `batch_norm` adds a BatchNorm after the
// second. Each user registers it under its own name.
class TinyDropoutBackbone : public models::Backbone {
 public:
  TinyDropoutBackbone(int64_t in_channels, int64_t channels, double p, bool batch_norm) : channels_(channels) {
    namespace nn = torch::nn;
    nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(in_channels, 16, 3).stride(2).padding(1)), nn::ReLU(true),
                       nn::Conv2d(nn::Conv2dOptions(16, channels, 3).stride(2).padding(1)));
    if (batch_norm) net->push_back(nn::BatchNorm2d(channels));
    net->push_back(nn::ReLU(true));
    net->push_back(nn::Dropout2d(p));
    net->push_back(nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)));
    net->push_back(nn::ReLU(true));
    net_ = register_module("net", net);
  }
  std::vector<models::FeatureInfo> feature_info() const override { return {{"c4", 4, channels_}}; }
  TensorDict forward_features(const torch::Tensor& images) override { return {{"c4", net_->forward(images)}}; }

 private:
  int64_t channels_;
  torch::nn::Sequential net_{nullptr};
};

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
