// Device placement on the GPU: every registered model at a test size, with the losses and metrics
// of its experiment, trained two steps by the Trainer on the GPU (train.device), evaluated there,
// then one batch by hand: forward (training and evaluation mode) and backward, every output and
// gradient on the GPU and finite. Models a config cannot feed from synthetic data (the language and
// vision-language models) take a hand-made batch. A CPU test keeps the table honest: a model, loss
// or metric registered without a case here is named, so the GPU check never silently skips one.
#include "core/error.h"
#include "data/synth.h"
#include "losses/loss.h"
#include "metrics/metric.h"
#include "models/model.h"
#include "tests/gpu/gpu.h"
#include "tests/support/scratch.h"
#include "train/builder.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <set>

namespace facet::train::test_placement {
namespace {

namespace fs = std::filesystem;
using gpu_test::source;

// One registered model: either data synthesised by `synth` and an experiment (a file under the
// source tree, or inline YAML) with `overrides`, or a model node and a hand-made batch.
struct ModelCase {
  std::string name;
  std::string synth;
  std::string config;
  std::vector<std::string> overrides;
  std::function<data::Batch()> batch;  // hand-made cases only (CPU tensors; moved by the test)
};

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

const std::string kSmallVit = "{image_size: 64, patch_size: 8, embed_dim: 96, depth: 2, num_heads: 4, drop_path: 0.0}";
const std::string kFaceEval = "[{name: resize, size: 64}, {name: scale, factor: 0.00392156862745098}]";
const std::string kLsd = "{name: lsd, train_images: 12, val_images: 6, size: 64}";
const std::string kBp4d = "{name: bp4d, frames_per_sequence: 4, size: 96}";
const std::string kConcept = "{name: concept, images: 4, size: 32}";
const std::string kBrats = "{name: brats, cases: 6, size: 32, slices: 16}";
const std::string kDeepLesion = "{name: deeplesion, patients: 6, slices: 8, size: 64, lesions_per_patient: 2, seed: 4}";

// A small two-stage detector on the synthetic DeepLesion (ResNet-18 trunk, narrow FPN and heads).
std::string detector(const std::string& name, const std::string& extra) {
  return "{data: {name: deeplesion, num_slices: 3, batch_size: 2, eval_split: test,"
         " transforms: [{name: ct_window, preset: mediastinum}, {name: pad, size_divisor: 32}],"
         " eval_transforms: [{name: ct_window, preset: mediastinum}, {name: pad, size_divisor: 32}]},"
         " model: {name: " + name + ", num_classes: 1, backbone: {name: resnet18}, fpn: {out_channels: 32},"
         " rpn: {feat_channels: 32}, roi: {fc: 64}" + extra + "},"
         " step: {name: model_losses}, metrics: [{name: froc}], optim: {name: adam, lr: 1.0e-4}, train: {}}";
}

// Two token sequences whose second token is the image token (id 99); labels mark the answer tokens.
data::Batch text_batch(bool image, bool landmarks) {
  data::Batch b;
  b.fields["input_ids"] = torch::tensor({1, 99, 5, 6, 7, 8, 1, 99, 9, 10, 11, 12}, torch::kLong).view({2, 6});
  if (!image) b.fields["input_ids"].masked_fill_(b.fields["input_ids"] == 99, 3);
  b.fields["attention_mask"] = torch::ones({2, 6}, torch::kLong);
  b.fields["labels"] = torch::tensor({-100, -100, -100, 6, 7, 8, -100, -100, -100, 10, 11, 12}, torch::kLong).view({2, 6});
  if (image) b.fields["image"] = torch::randn({2, 3, 32, 32});
  if (landmarks) b.fields["landmarks"] = torch::randn({2, 212});
  b.indices = torch::arange(2);
  return b;
}

std::vector<ModelCase> model_cases() {
  return {
      {"simple_cnn", "", source("experiments/demo/shapes.yaml").string(),
       {"data.train_size=16", "data.eval_size=8", "data.batch_size=8", "model.dropout=0.2"}, {}},
      {"resnet", kLsd,
       "{data: {name: image_folder, batch_size: 4, eval_transforms: " + kFaceEval + "}, "
       "model: {name: resnet, depth: 18, num_classes: 6}, loss: {name: cross_entropy}, optim: {name: sgd, lr: 0.01}, train: {}}",
       {"data.transforms=" + kFaceEval}, {}},
      {"vit", kLsd,
       "{data: {name: image_folder, batch_size: 4, eval_transforms: " + kFaceEval + "}, "
       "model: {name: vit, image_size: 64, patch_size: 8, embed_dim: 96, depth: 2, num_heads: 4, num_classes: 6}, "
       "loss: {name: cross_entropy}, optim: {name: adamw, lr: 1.0e-3}, train: {}}",
       {"data.transforms=" + kFaceEval}, {}},
      {"masked_cotex", kLsd, source("experiments/masked_cotex/lsd.yaml").string(),
       {"data.batch_size=4", "model.vit=" + kSmallVit, "data.transforms=" + kFaceEval, "data.eval_transforms=" + kFaceEval,
        "train.amp=none", "train.grad_accum=1"}, {}},
      {"mgrr_net", kBp4d, source("experiments/demo/mgrr_net_bp4d.yaml").string(),
       {"data.batch_size=4", "data.transforms[0].size=80", "data.eval_transforms[0].size=80", "model.dim=32"}, {}},
      {"algr_net", kBp4d, source("experiments/algr_net/bp4d_fold1.yaml").string(),
       {"data.batch_size=4", "model.backbone_depth=18", "model.dim=32", "data.transforms[0].size=80",
        "data.transforms[1].size=72", "data.eval_transforms[0].size=80", "data.eval_transforms[1].size=72",
        "train.max_epochs=~"}, {}},
      {"qface", "{name: face_tasks, train: 64, val: 6, size: 64}", source("experiments/qface/synthetic.yaml").string(),
       {"data.batch_size=4"}, {}},
      {"emma", "{name: abaw, train_videos: 3, val_videos: 2, frames_per_video: 3, size: 64}",
       source("experiments/emma/abaw4_mtl.yaml").string(),
       {"data.batch_size=4", "model.vit=" + kSmallVit, "data.transforms=" + kFaceEval, "data.eval_transforms=" + kFaceEval,
        "train.amp=none", "train.grad_accum=1", "model.dan=false", "train.max_epochs=~", "schedule.warmup_epochs=~"}, {}},
      {"faster_rcnn", kDeepLesion, detector("faster_rcnn", ""), {}, {}},
      {"mask_rcnn", kDeepLesion, detector("mask_rcnn", ", mask: {targets: boxes, channels: 32}"), {}, {}},
      {"llama", "",
       "{model: {name: llama, vocab_size: 100, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,"
       " num_attention_heads: 4, num_key_value_heads: 2}}",
       {}, [] { return text_batch(false, false); }},
      {"llava", "", source("experiments/vlm/tiny/llava.yaml").string(), {}, [] { return text_batch(true, false); }},
      {"emola", "", source("experiments/vlm/tiny/emola.yaml").string(), {}, [] { return text_batch(true, true); }},
      {"litegpt", "", source("experiments/vlm/tiny/litegpt.yaml").string(), {}, [] { return text_batch(true, false); }},
      {"stable_diffusion", kConcept, source("experiments/generative/tiny/custom_diffusion.yaml").string(),
       {"model.tokenizer=" + source("tests/fixtures/generative/clip_tokenizer").string()}, {}},
      {"detex", kConcept, source("experiments/generative/tiny/detex.yaml").string(),
       {"model.tokenizer=" + source("tests/fixtures/generative/clip_tokenizer").string()}, {}},
      {"unet", kBrats, source("experiments/generative/tiny/gvs_segmentor.yaml").string(), {}, {}},
      {"pseudo_healthy", kBrats, source("experiments/generative/tiny/smile.yaml").string(),
       {"model.pseudo_masks.after_steps=1", "model.reference_segmentor=true"}, {}},
  };
}

// Metrics that read generated text (and labels they move to the CPU themselves): no tensor of the
// model's reaches them, so there is nothing to place.
const std::set<std::string> kTextMetrics = {"bleu", "rouge_l", "litegpt_classes", "litegpt_boxes", "rege"};

Config load_case(const ModelCase& c, const std::vector<std::string>& extra) {
  std::vector<std::string> overrides = c.overrides;
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  if (c.config.front() != '{') return Config::load(c.config, overrides);
  Config config = Config::parse(c.config, c.name);
  for (const auto& o : overrides) config.set(o.substr(0, o.find('=')), o.substr(o.find('=') + 1));
  return config;
}

// Every loss (weighted_sum terms included) and metric a config names.
void collect(const Config& loss, std::set<std::string>& losses) {
  if (!loss.is_map() || !loss.has("name")) return;
  losses.insert(loss.get<std::string>("name"));
  if (loss.has("terms"))
    for (size_t i = 0; i < loss.at("terms").size(); ++i) collect(loss.at("terms").at(i).at("loss"), losses);
}

// Every tensor of `out` is on `device` and, if floating, finite.
void expect_placed(const Outputs& out, const torch::Device& device, const std::string& what) {
  auto check = [&](const std::string& key, const torch::Tensor& t) {
    if (!t.defined()) return;
    EXPECT_EQ(t.device(), device) << what << ": output " << key << " is on " << t.device();
    if (t.is_floating_point() && t.numel() > 0) {
      EXPECT_TRUE(torch::isfinite(t.detach()).all().item<bool>()) << what << ": output " << key << " is not finite";
    }
  };
  for (const auto& [key, t] : out) check(key, t);
  for (const auto& [key, list] : out.ragged)
    for (const auto& t : list) check(key + "[]", t);
}

// One batch by hand on `device`: the training forward (the model's own losses, else `loss`, else
// the outputs' mean), backward, then the evaluation forward.
void forward_backward(models::Model& model, const data::Batch& cpu_batch, losses::Loss* loss, const torch::Device& device,
                      const std::string& name) {
  const data::Batch batch = cpu_batch.to(device, device.is_cuda());
  model.train();
  model.zero_grad();
  Outputs out;
  torch::Tensor total;
  if (auto* own = dynamic_cast<models::ComputesLosses*>(&model)) {
    total = own->forward_losses(batch, out).total;
  } else if (auto* phased = dynamic_cast<models::PhasedObjective*>(&model)) {  // the alternating step's phases
    for (const auto& phase : phased->phases()) {
      const auto r = phased->phase_loss(phase, batch, out);
      total = total.defined() ? total + r.total : r.total;
    }
  } else if (auto* denoiser = dynamic_cast<models::Denoiser*>(&model)) {  // the diffusion step's objective
    const auto in = denoiser->encode(batch);
    const auto t = torch::full({in.x0.size(0)}, 500, torch::TensorOptions().dtype(torch::kLong).device(device));
    const auto noise = torch::randn_like(in.x0);
    out["prediction"] = denoiser->denoise(in.x0 + noise, t, in);
    total = (out["prediction"].to(torch::kFloat) - noise).pow(2).mean();
    for (const auto& [key, r] : in.regularizers) total = total + r;
  } else {
    out = model.forward(batch);
    if (loss) total = (*loss)(out, batch).total;
  }
  expect_placed(out, device, name + " (training forward)");
  if (!total.defined()) {
    total = torch::zeros({}, torch::TensorOptions().device(device));
    for (const auto& [key, t] : out)
      if (t.defined() && t.is_floating_point() && t.requires_grad()) total = total + t.to(torch::kFloat).mean();
  }
  ASSERT_EQ(total.device(), device) << name << ": the loss is on " << total.device();
  ASSERT_TRUE(std::isfinite(total.item<double>())) << name << ": loss " << total.item<double>();
  total.backward();
  int64_t with_grad = 0;
  for (const auto& p : model.named_parameters()) {
    const torch::Tensor& g = p.value().grad();
    if (!g.defined()) continue;
    ++with_grad;
    EXPECT_EQ(g.device(), device) << name << ": gradient of " << p.key();
    EXPECT_TRUE(torch::isfinite(g).all().item<bool>()) << name << ": gradient of " << p.key() << " is not finite";
  }
  EXPECT_GT(with_grad, 0) << name << ": no parameter received a gradient";
  model.eval();
  torch::NoGradGuard no_grad;
  expect_placed(model.forward(batch), device, name + " (evaluation forward)");
}

class GpuPlacement : public ::testing::TestWithParam<ModelCase> {};

TEST_P(GpuPlacement, TrainsEvaluatesAndBackpropagatesOnTheGpu) {
  FACET_GPU_DEVICE(device);
  const ModelCase& c = GetParam();
  const auto start = std::chrono::steady_clock::now();
  torch::manual_seed(0);
  if (c.batch) {
    const Config config = load_case(c, {});
    TrainOptions options;
    auto model = build_model(config, options, device);
    for (const auto& p : model->parameters()) EXPECT_EQ(p.device(), device) << c.name << ": a parameter stayed on " << p.device();
    for (const auto& b : model->buffers()) EXPECT_EQ(b.device(), device) << c.name << ": a buffer stayed on " << b.device();
    forward_backward(*model, c.batch(), nullptr, device, c.name);
  } else {
    std::vector<std::string> extra = {"train.max_steps=2", "train.log_every=1000", "data.workers=1", "train.threads=2",
                                      "train.eval_every=0", "train.device=" + device.str()};
    if (!c.synth.empty()) {
      const fs::path data = test_support::scratch_dir("facet_gpu", "data_" + c.name);
      data::synth_registry().create(Config::parse(c.synth), data);
      extra.push_back("data.root=" + data.string());
    }
    const Config config = load_case(c, extra);
    Trainer trainer(config, test_support::scratch_path("facet_gpu", "run_" + c.name));
    EXPECT_EQ(trainer.runtime().device, device);
    const RunResult r = trainer.fit();
    EXPECT_EQ(r.step, 2) << c.name;
    if (trainer.has_evaluation() && config.at("metrics").size() > 0) {
      EXPECT_FALSE(trainer.evaluate().empty()) << c.name << ": the metrics gave no value";
    }
    for (const auto& p : trainer.model().parameters()) ASSERT_EQ(p.device(), device) << c.name;
    auto& loader = trainer.loader();
    loader.start_epoch(0);
    const auto batch = loader.next();
    ASSERT_TRUE(batch.has_value()) << c.name;
    // The loader pins batches for a GPU run (non-blocking copies); ragged fields are not pinned.
    if (device.is_cuda()) {
      for (const auto& [key, t] : batch->fields) EXPECT_TRUE(t.is_pinned()) << c.name << ": batch field " << key << " is not pinned";
    }
    losses::Loss* loss = nullptr;
    if (!dynamic_cast<models::ComputesLosses*>(&trainer.model()) && !dynamic_cast<models::Denoiser*>(&trainer.model()) &&
        !dynamic_cast<models::PhasedObjective*>(&trainer.model()))
      loss = &trainer.loss();
    forward_backward(trainer.model(), *batch, loss, device, c.name);
  }
  gpu_test::sync(device);
  std::printf("%s on %s: %.1f s\n", c.name.c_str(), device.str().c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

INSTANTIATE_TEST_SUITE_P(Models, GpuPlacement, ::testing::ValuesIn(model_cases()),
                         [](const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; });

// The tensor metric no experiment above uses, on device outputs.
TEST(GpuPlacementMetrics, CccReadsDeviceOutputs) {
  FACET_GPU_DEVICE(device);
  auto metric = metrics::metric_registry().create(Config::parse("{name: ccc}"));
  torch::manual_seed(1);
  const torch::Tensor truth = torch::randn({16, 2});
  Outputs out;
  out["va"] = (truth + 0.1 * torch::randn({16, 2})).to(device);
  data::Batch batch;
  batch.fields["va"] = truth;
  batch.indices = torch::arange(16);
  metric->update(out, batch.to(device));
  const auto values = metric->compute();
  ASSERT_FALSE(values.empty());
  for (const auto& [key, v] : values) EXPECT_GT(v, 0.9) << key;
}

// Runs on every machine: the table above covers every registered model, loss and metric.
TEST(GpuPlacementTable, CoversEveryRegisteredModelLossAndMetric) {
  std::set<std::string> models_seen, losses_seen, metrics_seen = kTextMetrics;
  metrics_seen.insert("ccc");  // GpuPlacementMetrics
  for (const ModelCase& c : model_cases()) {
    models_seen.insert(c.name);
    const Config config = load_case(c, {});
    if (config.has("loss")) collect(config.at("loss"), losses_seen);
    if (config.has("metrics"))
      for (size_t i = 0; i < config.at("metrics").size(); ++i) metrics_seen.insert(config.at("metrics").at(i).get<std::string>("name"));
  }
  std::vector<std::string> missing;
  for (const auto& n : models::model_registry().names())
    if (!models_seen.count(n) && !n.starts_with("toy_") && !n.starts_with("test_")) missing.push_back("model " + n);
  for (const auto& n : losses::loss_registry().names())
    if (!losses_seen.count(n)) missing.push_back("loss " + n);
  for (const auto& n : metrics::metric_registry().names())
    if (!metrics_seen.count(n)) missing.push_back("metric " + n);
  EXPECT_TRUE(missing.empty()) << "registered without a case in tests/gpu/test_placement.cpp (add one to model_cases(): "
                               << "a test-size config and its data): " << fmt::format("{}", fmt::join(missing, ", "));
}

}  // namespace
}  // namespace facet::train::test_placement
