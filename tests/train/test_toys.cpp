// The toy components of tests/train/toys.h, registered for the train tests.
#include "tests/train/toys.h"

#include "core/file_io.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "metrics/metric.h"
#include "tests/support/paths.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/hook.h"
#include "train/step.h"
#include "train/trainer.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include <sstream>

namespace facet::train::toys {

void Recording::clear() {
  std::lock_guard lock(mutex);
  feedback.clear();
  events.clear();
  orders.clear();
  opened_splits.clear();
}

Recording& recording() {
  static Recording r;
  return r;
}

void save_recording(const std::filesystem::path& path) {
  auto& r = recording();
  std::lock_guard lock(r.mutex);
  nlohmann::json j = {{"feedback", r.feedback}, {"events", r.events}, {"orders", r.orders}};
  write_file_atomic(path, j.dump());
}

Config shapes_experiment(const std::vector<std::string>& overrides) {
  std::vector<std::string> all = {"train.log_every=1000", "data.workers=2", "train.threads=1", "data.eval_size=64"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return Config::load(test_support::source_path("experiments/demo/shapes.yaml"), all);
}

namespace {

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// --- samplers -------------------------------------------------------------------------------------

// Adapts to feedback: each epoch visits the samples with the highest last loss first (ties in a
// seeded random order), so its order cannot be recomputed after a resume without its state.
class RecordingSampler : public data::Sampler {
 public:
  RecordingSampler(int64_t size, uint64_t seed) : size_(size), seed_(seed) {}
  void set_batch_size(int64_t global_batch) override { batch_ = global_batch; }
  bool uses_feedback() const override { return true; }

  std::vector<int64_t> epoch_order(int64_t epoch) override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(data::mix_seed(seed_, static_cast<uint64_t>(epoch)));
    std::vector<int64_t> order = to_vector(torch::randperm(size_, gen, torch::kLong));
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return loss(a) > loss(b); });
    std::lock_guard lock(recording().mutex);
    recording().orders.push_back(order);
    return order;
  }

  void feedback(const torch::Tensor& indices, const torch::Tensor& losses) override {
    const auto idx = to_vector(indices);
    const torch::Tensor l = losses.to(torch::kCPU, torch::kDouble).contiguous();
    std::vector<double> values(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
    for (size_t i = 0; i < idx.size(); ++i) last_[idx[i]] = values[i];
    std::lock_guard lock(recording().mutex);
    recording().feedback.push_back({{"indices", idx}, {"losses", values}, {"batch", batch_}});
  }

  nlohmann::json state() const override {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [i, v] : last_) j[std::to_string(i)] = v;
    return {{"last", j}};
  }
  void load_state(const nlohmann::json& s) override {
    last_.clear();
    for (const auto& [k, v] : s.at("last").items()) last_[std::stoll(k)] = v.get<double>();
  }

 private:
  double loss(int64_t i) const {
    auto it = last_.find(i);
    return it == last_.end() ? 0.0 : it->second;
  }
  int64_t size_, batch_ = 0;
  uint64_t seed_;
  std::map<int64_t, double> last_;
};

FACET_REGISTER(data::sampler_registry(), "recording", "Test: records feedback, orders by the last loss",
               [](const Config&, int64_t size, uint64_t seed) { return std::make_shared<RecordingSampler>(size, seed); });

// --- hooks ----------------------------------------------------------------------------------------

class RecordingHook : public Hook {
 public:
  explicit RecordingHook(const Config& c)
      : label_(c.get<std::string>("label", "recording")), priority_(c.get<int>("priority", 50)),
        per_sample_(c.get<bool>("per_sample", false)), crash_at_(c.get<int64_t>("crash_at_step", -1)) {}
  std::string name() const override { return label_; }
  int priority() const override { return priority_; }
  bool wants_per_sample() const override { return per_sample_; }

  void before_train(Trainer&) override { note("before_train"); }
  void before_micro_batch(Trainer&, const data::Batch& b, int64_t i) override { note(fmt::format("before_micro {} {}", i, b.size())); }
  void after_micro_batch(Trainer&, const MicroBatch& m) override {
    note(fmt::format("after_micro {} outputs={} loss={}", m.index, m.outputs.size(), m.losses.total.defined()));
  }
  void after_step(Trainer& t, const StepResult& r) override {
    note(fmt::format("step {} applied={} per_sample={}", t.state().step, r.applied,
                     r.per_sample.defined() ? r.per_sample.numel() : -1));
    ++steps_;
    // Once per run directory: the resumed run passes the same step again.
    static std::set<std::string> crashed;
    if (t.state().step == crash_at_ && crashed.insert(t.run_dir().string()).second) fail("toy crash at step {}", crash_at_);
  }
  void after_epoch(Trainer& t) override { note(fmt::format("epoch {}", t.state().epoch)); }
  void before_eval(Trainer&) override { note("before_eval"); }
  void after_eval(Trainer&, const EvalResults&) override { note("after_eval"); }
  void after_train(Trainer&) override { note("after_train"); }
  void on_save(Trainer&, CheckpointContents& c) override { c.state["hooks"][label_] = {{"steps", steps_}}; }
  void on_restore(Trainer&, const CheckpointContents& c) override {
    steps_ = c.state.at("hooks").at(label_).at("steps").get<int64_t>();
    note(fmt::format("restored {}", steps_));
  }

 private:
  void note(std::string event) {
    std::lock_guard lock(recording().mutex);
    recording().events.push_back(label_ + ": " + std::move(event));
  }
  std::string label_;
  int priority_;
  bool per_sample_;
  int64_t crash_at_, steps_ = 0;
};

FACET_REGISTER(hook_registry(), "recording", "Test: records every hook point (label, priority, per_sample, crash_at_step)",
               [](const Config& c) { return std::make_shared<RecordingHook>(c); });

// --- datasets -------------------------------------------------------------------------------------

// synthetic_shapes built from a copy of the node with its own keys removed.
std::shared_ptr<data::Dataset> shapes_from(const Config& c, const std::string& split, const std::vector<std::string>& own) {
  Config inner = Config::parse(c.dump(), c.where());
  inner.set("name", "synthetic_shapes");
  for (const auto& key : own) inner.set(key, "~");
  c.consume();
  auto out = data::dataset_registry().create(inner, split);
  inner.consume();
  return out;
}

// Fails on the samples listed in `fail` with the kind of exception `throw` names.
class FlakyShapes : public data::Dataset {
 public:
  FlakyShapes(const Config& c, const std::string& split)
      : inner_(shapes_from(c, split, {"fail", "throw", "fail_split"})),
        fail_(c.get<std::vector<int64_t>>("fail", {})), kind_(c.get<std::string>("throw", "facet")),
        active_(split == c.get<std::string>("fail_split", "train")) {}
  int64_t size() const override { return inner_->size(); }
  std::vector<std::string> label_names() const override { return inner_->label_names(); }
  data::Sample get(int64_t index, uint64_t seed) const override {
    if (active_ && std::find(fail_.begin(), fail_.end(), index) != fail_.end()) {
      if (kind_ == "torch") TORCH_CHECK(false, "toy LibTorch failure at ", index);
      if (kind_ == "opencv") throw cv::Exception(cv::Error::StsBadArg, "toy OpenCV failure", "get", __FILE__, __LINE__);
      if (kind_ == "alloc") throw std::bad_alloc();
      fail("toy failure at {}", index);
    }
    return inner_->get(index, seed);
  }

 private:
  std::shared_ptr<data::Dataset> inner_;
  std::vector<int64_t> fail_;
  std::string kind_;
  bool active_;
};

FACET_REGISTER(data::dataset_registry(), "flaky_shapes", "Test: synthetic_shapes failing on chosen samples (fail, throw)",
               [](const Config& c, const std::string& split) { return std::make_shared<FlakyShapes>(c, split); });

class SplitProbe : public data::Dataset {
 public:
  SplitProbe(const Config& c, const std::string& split) : inner_(shapes_from(c, split, {})) {
    std::lock_guard lock(recording().mutex);
    recording().opened_splits.insert(split);
  }
  int64_t size() const override { return inner_->size(); }
  std::vector<std::string> label_names() const override { return inner_->label_names(); }
  data::Sample get(int64_t index, uint64_t seed) const override { return inner_->get(index, seed); }

 private:
  std::shared_ptr<data::Dataset> inner_;
};

FACET_REGISTER(data::dataset_registry(), "split_probe", "Test: synthetic_shapes noting which splits were opened",
               [](const Config& c, const std::string& split) { return std::make_shared<SplitProbe>(c, split); });

// 1-D samples from N(mean, std): field "x" [1].
class Gaussian : public data::Dataset {
 public:
  Gaussian(const Config& c, const std::string& split)
      : size_(c.get<int64_t>("size", 512)), mean_(c.get<double>("mean", 4.0)), std_(c.get<double>("std", 0.5)),
        seed_(split == "train" ? 11 : 12) {}
  int64_t size() const override { return size_; }
  data::Sample get(int64_t index, uint64_t) const override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(data::mix_seed(seed_, static_cast<uint64_t>(index)));
    data::Sample s;
    s.fields["x"] = torch::randn({1}, gen) * std_ + mean_;
    s.id = fmt::format("gaussian/{}", index);
    return s;
  }

 private:
  int64_t size_;
  double mean_, std_;
  uint64_t seed_;
};

FACET_REGISTER(data::dataset_registry(), "toy_gaussian", "Test: 1-D Gaussian samples (size, mean, std)",
               [](const Config& c, const std::string& split) { return std::make_shared<Gaussian>(c, split); });

// A bright square on noise: one box (ragged "boxes", "box_labels"), and text "answer".
class Squares : public data::Dataset {
 public:
  Squares(const Config& c, const std::string& split)
      : size_(c.get<int64_t>("size", 64)), seed_(split == "train" ? 21 : 22) {}
  int64_t size() const override { return size_; }
  std::vector<std::string> label_names() const override { return {"square"}; }
  data::Sample get(int64_t index, uint64_t) const override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(data::mix_seed(seed_, static_cast<uint64_t>(index)));
    const auto p = torch::rand({3}, gen);
    const float side = 6 + 8 * p[2].item<float>(), x = 1 + (30 - side) * p[0].item<float>(), y = 1 + (30 - side) * p[1].item<float>();
    torch::Tensor image = 0.1f * torch::randn({1, 32, 32}, gen);
    image.narrow(1, static_cast<int64_t>(y), static_cast<int64_t>(side)).narrow(2, static_cast<int64_t>(x), static_cast<int64_t>(side)) += 1.0f;
    data::Sample s;
    s.fields["image"] = image;
    s.ragged["boxes"] = torch::tensor({{x, y, x + std::floor(side), y + std::floor(side)}});
    s.ragged["box_labels"] = torch::zeros({1}, torch::kLong);
    s.text["answer"] = fmt::format("square at {:.0f} {:.0f}", x, y);
    s.id = fmt::format("squares/{}", index);
    return s;
  }

 private:
  int64_t size_;
  uint64_t seed_;
};

FACET_REGISTER(data::dataset_registry(), "toy_squares", "Test: one square per image, as a box and as text",
               [](const Config& c, const std::string& split) { return std::make_shared<Squares>(c, split); });

// --- models ---------------------------------------------------------------------------------------

// Regresses the one box of each image; computes its own L1 loss per image (step model_losses) and
// returns ragged boxes, scores and labels and a text answer.
class ToyDetector : public models::Model, public models::ComputesLosses {
 public:
  ToyDetector() {
    features_ = register_module("features", torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)),
                                                                   torch::nn::ReLU(), torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1)),
                                                                   torch::nn::ReLU()));
    head_ = register_module("head", torch::nn::Linear(8 * 4 * 4, 5));
  }
  torch::Tensor raw(const data::Batch& b) {
    auto x = torch::adaptive_avg_pool2d(features_->forward(b.fields.at("image")), {4, 4});
    return head_->forward(x.flatten(1));
  }
  Outputs forward(const data::Batch& b) override {
    const torch::Tensor r = raw(b);
    Outputs out;
    out["box"] = r.narrow(1, 0, 4) * 32.0;
    for (int64_t i = 0; i < b.size(); ++i) {
      out.ragged["boxes"].push_back(out.at("box")[i].unsqueeze(0));
      out.ragged["scores"].push_back(torch::sigmoid(r[i][4]).reshape({1}));
      out.ragged["labels"].push_back(torch::zeros({1}, torch::kLong));
      const auto box = out.at("box")[i].to(torch::kCPU);
      out.text["answer"].push_back(fmt::format("square at {:.0f} {:.0f}", box[0].item<float>(), box[1].item<float>()));
    }
    return out;
  }
  losses::LossResult forward_losses(const data::Batch& b, Outputs& outputs) override {
    outputs = forward(b);
    std::vector<torch::Tensor> truth;
    for (const auto& t : b.ragged.at("boxes")) truth.push_back(t[0]);
    const torch::Tensor per_sample = (outputs.at("box") - torch::stack(truth)).abs().mean(1);
    losses::LossResult r;
    r.per_sample = per_sample.detach();
    r.total = per_sample.mean();
    r.parts["l1"] = r.total;
    return r;
  }
  std::string default_visualizer() const override { return "boxes"; }

 private:
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear head_{nullptr};
};

FACET_REGISTER(models::model_registry(), "toy_detector", "Test: one box per image, own losses, ragged outputs",
               [](const Config&) { return std::make_shared<ToyDetector>(); });

// x = a z + b against a small discriminator; phases "discriminator" and "generator".
class ToyGan : public models::Model, public models::PhasedObjective {
 public:
  ToyGan() {
    generator = register_module("generator", torch::nn::Linear(1, 1));
    discriminator = register_module("discriminator", torch::nn::Sequential(torch::nn::Linear(1, 16), torch::nn::LeakyReLU(),
                                                                           torch::nn::Linear(16, 16), torch::nn::LeakyReLU(),
                                                                           torch::nn::Linear(16, 1)));
  }
  torch::Tensor sample(int64_t n, const torch::Device& device) { return generator->forward(torch::randn({n, 1}, device)); }
  Outputs forward(const data::Batch& b) override {
    return {{"samples", sample(b.size(), b.fields.at("x").device())}};
  }
  std::vector<std::string> phases() const override { return {"discriminator", "generator"}; }
  losses::LossResult phase_loss(const std::string& phase, const data::Batch& b, Outputs& outputs) override {
    namespace F = torch::nn::functional;
    const torch::Tensor real = b.fields.at("x");
    losses::LossResult r;
    if (phase == "discriminator") {
      const torch::Tensor fake = sample(real.size(0), real.device()).detach();
      const auto lr = F::binary_cross_entropy_with_logits(discriminator->forward(real), torch::ones_like(real),
                                                          F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
      const auto lf = F::binary_cross_entropy_with_logits(discriminator->forward(fake), torch::zeros_like(fake),
                                                          F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
      r.per_sample = (lr + lf).view({-1}).detach();
      r.parts["real"] = lr.mean();
      r.parts["fake"] = lf.mean();
      r.total = lr.mean() + lf.mean();
    } else {
      const torch::Tensor fake = sample(real.size(0), real.device());
      const auto l = F::binary_cross_entropy_with_logits(discriminator->forward(fake), torch::ones_like(fake),
                                                         F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
      r.per_sample = l.view({-1}).detach();
      r.total = l.mean();
      outputs["samples"] = fake;
    }
    return r;
  }
  std::string default_visualizer() const override { return "image_grid"; }

  torch::nn::Linear generator{nullptr};
  torch::nn::Sequential discriminator{nullptr};
};

FACET_REGISTER(models::model_registry(), "toy_gan", "Test: 1-D GAN (generator a z + b, MLP discriminator)",
               [](const Config&) { return std::make_shared<ToyGan>(); });

// A frozen encoder (conv + BatchNorm, loaded and frozen by the config) gives 4-channel latents of
// the image; a small conv net conditioned on the timestep predicts their noise.
class ToyDenoiser : public models::Model, public models::Denoiser {
 public:
  ToyDenoiser() {
    encoder = register_module("encoder", torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                                                               torch::nn::BatchNorm2d(4)));
    time_ = register_module("time", torch::nn::Linear(16, 32));
    in_ = register_module("conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 32, 3).padding(1)));
    mid_ = register_module("conv_mid", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 32, 3).padding(1)));
    out_ = register_module("conv_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 4, 3).padding(1)));
  }
  models::DenoiserInputs encode(const data::Batch& b) override {
    models::DenoiserInputs in;
    in.x0 = encoder->forward(b.fields.at("image"));
    return in;
  }
  torch::Tensor denoise(const torch::Tensor& noisy, const torch::Tensor& t, const models::DenoiserInputs&) override {
    const torch::Tensor freqs = torch::exp(-std::log(1000.0) * torch::arange(8, noisy.options()) / 8.0);
    const torch::Tensor angles = t.to(noisy.dtype()).unsqueeze(1) * freqs.unsqueeze(0);
    const torch::Tensor embedding = time_->forward(torch::cat({angles.sin(), angles.cos()}, 1)).view({-1, 32, 1, 1});
    auto h = torch::silu(in_->forward(noisy) + embedding);
    h = torch::silu(mid_->forward(h)) + h;
    return out_->forward(h);
  }
  Outputs forward(const data::Batch& b) override { return {{"latents", encode(b).x0}}; }

  torch::nn::Sequential encoder{nullptr};

 private:
  torch::nn::Linear time_{nullptr};
  torch::nn::Conv2d in_{nullptr}, mid_{nullptr}, out_{nullptr};
};

FACET_REGISTER(models::model_registry(), "toy_denoiser", "Test: latent denoiser with a frozen conv + BN encoder",
               [](const Config&) { return std::make_shared<ToyDenoiser>(); });

// --- metrics --------------------------------------------------------------------------------------

// The mean of outputs[`key`] kept as per-sample records "index value" (merged across ranks), and
// their number.
class RecordMean : public metrics::Metric {
 public:
  explicit RecordMean(const Config& c) : key_(c.get<std::string>("key", "box")) {}
  void update(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor v = outputs.at(key_).detach().to(torch::kCPU, torch::kDouble).reshape({batch.size(), -1}).mean(1);
    const torch::Tensor idx = batch.indices.to(torch::kCPU);
    for (int64_t i = 0; i < batch.size(); ++i) records_[idx[i].item<int64_t>()] = v[i].item<double>();
  }
  std::map<std::string, double> compute() const override {
    double sum = 0;
    for (const auto& [i, v] : records_) sum += v;
    return {{"record_mean", records_.empty() ? 0.0 : sum / static_cast<double>(records_.size())},
            {"records", static_cast<double>(records_.size())}};
  }
  void reset() override { records_.clear(); }
  torch::Tensor state() const override { return torch::zeros({0}, torch::kDouble); }
  void load_state(const torch::Tensor&) override {}
  std::string records() const override {
    std::ostringstream out;
    out.precision(17);
    for (const auto& [i, v] : records_) out << i << ' ' << v << '\n';
    return out.str();
  }
  void merge_records(const std::vector<std::string>& per_rank) override {
    records_.clear();
    for (const auto& text : per_rank) {
      std::istringstream in(text);
      int64_t i;
      double v;
      while (in >> i >> v) records_[i] = v;
    }
  }

 private:
  std::string key_;
  std::map<int64_t, double> records_;
};

FACET_REGISTER(metrics::metric_registry(), "toy_record_mean", "Test: a mean kept as per-sample records (key)",
               [](const Config& c) { return std::make_shared<RecordMean>(c); });

// "value": the n-th of `values` (strings, so "nan" can be one) at the n-th evaluation, the last one after.
class ScriptedMetric : public metrics::Metric {
 public:
  explicit ScriptedMetric(const Config& c) {
    for (const auto& v : c.get<std::vector<std::string>>("values")) values_.push_back(std::stod(v));
  }
  // An evaluation is counted at its first sample (the trainer also asks for the names, without any).
  void prepare(const data::Dataset&) override { fresh_ = true; }
  void update(const Outputs&, const data::Batch&) override {
    if (fresh_) ++evaluation_;
    fresh_ = false;
  }
  std::map<std::string, double> compute() const override {
    return {{"value", values_.at(std::clamp<size_t>(evaluation_, 1, values_.size()) - 1)}};
  }
  void reset() override {}
  torch::Tensor state() const override { return torch::zeros({0}, torch::kDouble); }
  void load_state(const torch::Tensor&) override {}

 private:
  std::vector<double> values_;
  size_t evaluation_ = 0;
  bool fresh_ = false;
};

FACET_REGISTER(metrics::metric_registry(), "toy_scripted", "Test: a value given per evaluation (values)",
               [](const Config& c) { return std::make_shared<ScriptedMetric>(c); });

}  // namespace
}  // namespace facet::train::toys
