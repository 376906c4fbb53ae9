// Pseudo-healthy synthesis (models/generative/pseudo_healthy.h): the generator and the U-Net against
// PyTorch modules with the reference checkpoints' names (tools/golden/pseudo_healthy_golden.py), the
// published parameter counts, GVS's phase losses against the same formulas in PyTorch, the
// semi-supervised pseudo masks on a hand-checked case, learning on a fixed batch, and the errors.
#include "core/config.h"
#include "core/safetensors.h"
#include "models/generative/pseudo_healthy.h"
#include "models/model.h"
#include "models/weights/init_weights.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"
#include "tests/support/tensors.h"
#include "train/visualize.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::test_pseudo_healthy {

using namespace facet::models;
using namespace facet::models::generative;
using namespace facet::models::segmentation;
using facet::test_support::expect_close;
using facet::test_support::parameter_count;
using ::testing::HasSubstr;

namespace {

safetensors::TensorMap fixture(const std::string& name) {
  return safetensors::load(std::string(test_support::kSourceDir) + "/tests/fixtures/pseudo_healthy/" + name);
}

// Copies every parameter and buffer of `m` from `tensors[prefix + name]`; each must be there.
void load_state(torch::nn::Module& m, const safetensors::TensorMap& tensors, const std::string& prefix = "") {
  torch::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, torch::Tensor& t) {
    const auto it = tensors.find(prefix + name);
    ASSERT_NE(it, tensors.end()) << "missing " << prefix + name;
    ASSERT_EQ(it->second.sizes(), t.sizes()) << name;
    t.copy_(it->second);
  };
  for (auto& p : m.named_parameters()) copy(p.key(), p.value());
  for (auto& b : m.named_buffers()) copy(b.key(), b.value());
}

int64_t state_size(const torch::nn::Module& m) { return static_cast<int64_t>(m.named_parameters().size() + m.named_buffers().size()); }

int64_t keys_with_prefix(const safetensors::TensorMap& t, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [k, v] : t) n += k.starts_with(prefix) ? 1 : 0;
  return n;
}

std::shared_ptr<Model> tiny_model(const std::string& extra = "", const std::string& generator = "{filters: 4, blocks: 1}",
                                  const std::string& segmentor = "{width: 2}") {
  return model_registry().create(
      Config::parse("name: pseudo_healthy\ngenerator: " + generator + "\nsegmentor: " + segmentor + "\n" + extra, "test"));
}

data::Batch batch_from(const safetensors::TensorMap& t) {
  data::Batch b;
  b.fields["image"] = t.at("batch.image");
  b.fields["mask"] = t.at("batch.mask");
  b.fields["brain_mask"] = t.at("batch.brain_mask");
  b.indices = torch::arange(b.fields["image"].size(0));
  return b;
}

}  // namespace

TEST(PseudoHealthy, GeneratorMatchesCycleGansResnetGenerator) {
  const auto t = fixture("generator_tiny.safetensors");
  ResnetGeneratorOptions o;
  o.filters = 4;
  o.blocks = 2;
  ResnetGenerator g(o);
  EXPECT_EQ(state_size(*g), static_cast<int64_t>(t.size()) - 2);  // every tensor but golden.x / golden.out
  load_state(*g, t);
  g->eval();
  torch::NoGradGuard no_grad;
  expect_close(g->forward(t.at("golden.x")), t.at("golden.out"), 1e-5, "generator");
  EXPECT_THAT(test_support::message_of([&] { g->forward(torch::zeros({1, 1, 10, 16})); }), HasSubstr("multiples of 4"));
}

TEST(PseudoHealthy, UNetMatchesMilesialsUNetBilinearAndTransposed) {
  for (const bool bilinear : {true, false}) {
    const auto t = fixture(bilinear ? "unet_tiny.safetensors" : "unet_tiny_transposed.safetensors");
    UNetOptions o;
    o.width = 2;
    o.bilinear = bilinear;
    UNet u(o);
    EXPECT_EQ(state_size(*u), static_cast<int64_t>(t.size()) - 2) << bilinear;
    load_state(*u, t);
    u->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor out = u->forward(t.at("golden.x"));  // 20 x 28: odd sizes at the bottom, padded on the way up
    expect_close(out, t.at("golden.out"), 1e-5, bilinear ? "bilinear u-net" : "transposed u-net");
  }
}

TEST(PseudoHealthy, PublishedConfigurationsHaveTheReferenceParameterCounts) {
  const safetensors::File golden(std::string(test_support::kSourceDir) + "/tests/fixtures/pseudo_healthy/generator_tiny.safetensors");
  auto model = model_registry().create(Config::parse("name: pseudo_healthy", "test"));
  // GVS: resnet_9blocks with 64 filters, 1 -> 1 channel; the Segmenter U-Net, 64 wide, 2 classes.
  EXPECT_EQ(parameter_count(*model->named_children()["generator"]), 11365633);
  EXPECT_EQ(parameter_count(*model->named_children()["segmentor"]), 17266306);
  EXPECT_EQ(std::to_string(11365633), golden.metadata().at("generator_parameters"));
  EXPECT_EQ(std::to_string(17266306), golden.metadata().at("unet_parameters"));
  EXPECT_FALSE(model->named_children().contains("reference_segmentor"));
  auto judged = model_registry().create(Config::parse("name: pseudo_healthy\nreference_segmentor: true", "test"));
  EXPECT_EQ(parameter_count(*judged), 11365633 + 2 * 17266306);
}

// The phase losses against the same formulas written in PyTorch (per-sample mask and normal-tissue
// mean, the header's two departures from GVS's code included).
TEST(PseudoHealthy, PhaseLossesMatchTheirPyTorchFormulas) {
  const auto t = fixture("losses.safetensors");
  auto model = tiny_model();
  // The fixture holds the generator and segmentor; the model's step counter is its own.
  EXPECT_EQ(keys_with_prefix(t, "generator.") + keys_with_prefix(t, "segmentor."), state_size(*model) - 1);
  load_state(*model->named_children()["generator"], t, "generator.");
  load_state(*model->named_children()["segmentor"], t, "segmentor.");
  model->train();
  auto& phased = dynamic_cast<PhasedObjective&>(*model);
  EXPECT_EQ(phased.phases(), (std::vector<std::string>{"generator", "segmentor"}));
  const data::Batch batch = batch_from(t);

  Outputs outputs;
  const auto g = phased.phase_loss("generator", batch, outputs);
  const torch::Tensor adversarial = t.at("loss.adversarial"), identity = t.at("loss.identity"), fill = t.at("loss.fill");
  expect_close(g.parts.at("adversarial"), adversarial.mean(), 1e-5, "adversarial");
  expect_close(g.parts.at("identity"), identity.mean(), 1e-5, "identity");
  expect_close(g.parts.at("fill"), fill.mean(), 1e-5, "fill");
  expect_close(g.per_sample, adversarial + 10 * identity + 5 * fill, 1e-5, "generator per sample (λ 1, 10, 5)");
  expect_close(g.total, (adversarial + 10 * identity + 5 * fill).mean(), 1e-5, "generator total");
  EXPECT_TRUE(g.total.requires_grad());
  EXPECT_EQ(outputs.at("pseudo_healthy").sizes(), batch.fields.at("image").sizes());

  // The generator's update between the phases does not reach the segmentor phase: it trains on the
  // generator phase's output, as the reference does. Without one before it, G runs again.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_children()["generator"]->parameters()) p.add_(0.05);
  }
  const auto s = phased.phase_loss("segmentor", batch, outputs);
  expect_close(s.per_sample, t.at("loss.segmentation"), 1e-5, "segmentation per sample");
  const auto again = phased.phase_loss("segmentor", batch, outputs);
  EXPECT_GT((again.per_sample - s.per_sample).abs().max().item<double>(), 1e-4);
  expect_close(s.total, t.at("loss.segmentation").mean(), 1e-5, "segmentor total");
  // The segmentor's loss reaches the segmentor only: the generator ran without gradients.
  s.total.backward();
  for (const auto& p : model->named_children()["generator"]->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_THAT(test_support::message_of([&] { phased.phase_loss("discriminator", batch, outputs); }),
              HasSubstr("no phase \"discriminator\""));
}

// [I] SMILE: an unlabelled sample weighs nothing until `after_steps` generator batches, then the
// segmentor's mask on the real image stands in for the missing one.
TEST(PseudoHealthy, UnlabelledSamplesWaitThenTrainOnTheSegmentorsMasks) {
  const auto t = fixture("losses.safetensors");
  auto model = tiny_model("pseudo_masks: {after_steps: 2, threshold: 0.5}");
  load_state(*model->named_children()["generator"], t, "generator.");
  load_state(*model->named_children()["segmentor"], t, "segmentor.");
  model->train();
  auto& phased = dynamic_cast<PhasedObjective&>(*model);
  data::Batch batch = batch_from(t);
  batch.fields["labelled"] = torch::tensor({1.0f, 0.0f, 1.0f});
  Outputs outputs;
  const auto all_labelled = [&] {
    data::Batch b = batch_from(t);
    b.fields["labelled"] = torch::ones({3});
    return phased.phase_loss("generator", b, outputs);
  };

  // Before: sample 1 contributes nothing and the mean is over the two labelled ones.
  auto r = phased.phase_loss("generator", batch, outputs);
  EXPECT_EQ(r.per_sample[1].item<float>(), 0.0f);
  const auto reference = all_labelled();  // 2 generator batches now: pseudo masks from here on
  expect_close(r.per_sample.index({torch::tensor({0, 2})}), reference.per_sample.index({torch::tensor({0, 2})}), 1e-5, "labelled ones");
  expect_close(r.total, (reference.per_sample[0] + reference.per_sample[2]) / 2, 1e-5, "mean over the labelled");

  // After: force the segmentor to call everything lesion; the pseudo mask is then the brain, so the
  // unlabelled sample's identity term covers only what lies outside it.
  {
    torch::NoGradGuard no_grad;
    auto bias = model->named_parameters()["segmentor.outc.conv.bias"];
    bias.copy_(torch::tensor({-100.0f, 100.0f}));
  }
  r = phased.phase_loss("generator", batch, outputs);
  const torch::Tensor y_all = outputs.at("pseudo_healthy").detach();
  const torch::Tensor x = batch.fields.at("image")[1], brain = batch.fields.at("brain_mask")[1], y = y_all[1];
  const double identity = ((y - x).pow(2) * (1 - brain)).mean().item<double>();
  const double fill = ((y - 0.0).pow(2) * brain).mean().item<double>();  // no normal brain left: μ = 0
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;  // the segmentor on the same batch, in the same (training) mode
    logits = std::dynamic_pointer_cast<UNetImpl>(model->named_children()["segmentor"])->forward(y_all)[1];
  }
  const double adversarial =
      torch::nn::functional::cross_entropy(logits.unsqueeze(0), torch::zeros({1, 16, 16}, torch::kLong)).item<double>();
  EXPECT_GT(adversarial, 150);  // it is sure it sees a lesion everywhere
  const double expected = adversarial + 10 * identity + 5 * fill;
  EXPECT_NEAR(r.per_sample[1].item<double>(), expected, 1e-4 * expected);
  expect_close(r.total, r.per_sample.mean(), 1e-5, "every sample counts");

  // The segmentor phase of the same step: the pseudo mask for the unlabelled sample, the own masks
  // for the labelled ones, on the generator phase's output.
  const auto s = phased.phase_loss("segmentor", batch, outputs);
  torch::Tensor seg_logits;
  {
    torch::NoGradGuard no_grad;
    seg_logits = std::dynamic_pointer_cast<UNetImpl>(model->named_children()["segmentor"])->forward(y_all);
  }
  const torch::Tensor change = (y_all - batch.fields.at("image")).abs().sum(1);
  const torch::Tensor w = (1 - change / change.flatten(1).amax(1).view({-1, 1, 1})).clamp_min(0.1);
  const torch::Tensor truth = torch::stack({batch.fields.at("mask")[0][0], brain[0], batch.fields.at("mask")[2][0]}).to(torch::kLong);
  const torch::Tensor expected_seg =
      (torch::nn::functional::cross_entropy(seg_logits, truth, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone)) * w)
          .flatten(1)
          .mean(1);
  expect_close(s.per_sample, expected_seg, 1e-5, "segmentation: own masks and the pseudo mask");
}

TEST(PseudoHealthy, AlternatingPhasesRemoveTheLesionAndKeepTheRest) {
  // One image: a disc of tissue with a bright blob in it. Adam on each phase, as the step runs them.
  torch::manual_seed(3);
  auto model = tiny_model("", "{filters: 8, blocks: 2}", "{width: 4}");
  model->train();
  auto& phased = dynamic_cast<PhasedObjective&>(*model);
  const auto yy = torch::arange(32).view({-1, 1}).to(torch::kFloat), xx = torch::arange(32).view({1, -1}).to(torch::kFloat);
  const torch::Tensor brain = ((yy - 16).pow(2) + (xx - 16).pow(2) < 196).to(torch::kFloat);
  const torch::Tensor lesion = ((yy - 12).pow(2) + (xx - 19).pow(2) < 16).to(torch::kFloat);
  data::Batch batch;
  batch.fields["image"] = (brain * 0.4 + lesion * 0.5 + 0.05 * torch::randn({32, 32}) * brain).view({1, 1, 32, 32}).repeat({2, 1, 1, 1});
  batch.fields["mask"] = lesion.view({1, 1, 32, 32}).repeat({2, 1, 1, 1});
  batch.fields["brain_mask"] = brain.view({1, 1, 32, 32}).repeat({2, 1, 1, 1});
  batch.indices = torch::arange(2);
  std::vector<torch::Tensor> g_params, s_params;
  for (auto& p : model->named_parameters()) (p.key().starts_with("generator.") ? g_params : s_params).push_back(p.value());
  torch::optim::Adam g_opt(g_params, torch::optim::AdamOptions(1e-3).betas({0.9, 0.99}));
  torch::optim::Adam s_opt(s_params, torch::optim::AdamOptions(1e-3).betas({0.9, 0.99}));
  double first = 0, last = 0;
  const int steps = 120;
  for (int i = 0; i < steps; ++i) {
    Outputs outputs;
    g_opt.zero_grad();
    const auto g = phased.phase_loss("generator", batch, outputs);
    g.total.backward();
    g_opt.step();
    s_opt.zero_grad();
    phased.phase_loss("segmentor", batch, outputs).total.backward();
    s_opt.step();
    const double kept = (10 * g.parts.at("identity") + 5 * g.parts.at("fill")).item<double>();
    if (i < 10) first += kept / 10;
    if (i >= steps - 10) last += kept / 10;
  }
  std::printf("identity + fill: first 10 steps %.4f, last 10 %.4f\n", first, last);
  EXPECT_LT(last, first / 4);
  // The output: the blob is gone (close to the tissue around it), the tissue kept.
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor y = model->forward(batch).at("pseudo_healthy")[0][0], x = batch.fields.at("image")[0][0];
  const double in_lesion = (y * lesion).sum().item<double>() / lesion.sum().item<double>();
  const double normal_error = ((y - x).abs() * brain * (1 - lesion)).sum().item<double>() / (brain * (1 - lesion)).sum().item<double>();
  std::printf("lesion mean %.3f (tissue 0.4, lesion 0.9), normal-tissue error %.3f\n", in_lesion, normal_error);
  EXPECT_LT(std::abs(in_lesion - 0.4), 0.15);
  EXPECT_LT(normal_error, 0.1);
}

TEST(PseudoHealthy, ErrorsNameTheKey) {
  auto model = tiny_model();
  auto& phased = dynamic_cast<PhasedObjective&>(*model);
  data::Batch batch;
  batch.fields["image"] = torch::zeros({1, 1, 16, 16});
  batch.indices = torch::arange(1);
  Outputs outputs;
  EXPECT_THAT(test_support::message_of([&] { phased.phase_loss("generator", batch, outputs); }),
              HasSubstr("no field \"mask\" (model.mask_field); its fields: image"));
  batch.fields["mask"] = torch::zeros({1, 16, 16});
  EXPECT_THAT(test_support::message_of([&] { phased.phase_loss("generator", batch, outputs); }),
              HasSubstr("the field \"mask\" (model.mask_field) is [1, 16, 16]; expected [B, 1, H, W]"));
  batch.fields["mask"] = torch::zeros({1, 1, 16, 16});
  batch.fields["brain_mask"] = torch::ones({1, 16, 16});  // would broadcast across the batch
  EXPECT_THAT(test_support::message_of([&] { phased.phase_loss("generator", batch, outputs); }),
              HasSubstr("the field \"brain_mask\" (model.brain_field) is [1, 16, 16]"));
  EXPECT_THAT(test_support::message_of([] { model_registry().create(Config::parse("name: pseudo_healthy\nsegmentor: {width: 5}", "t")); }),
              HasSubstr("segmentor.width: a bilinear U-Net halves its widest level"));
  EXPECT_THAT(test_support::message_of([] { model_registry().create(Config::parse("name: pseudo_healthy\nsegmentor: {in_channels: 3}", "t")); }),
              HasSubstr("the segmentor reads 3"));
  EXPECT_THAT(test_support::message_of(
                  [] { model_registry().create(Config::parse("name: pseudo_healthy\npseudo_masks: {threshold: 1.5}", "t")); }),
              HasSubstr("pseudo_masks.threshold"));
}

TEST(PseudoHealthy, PicturesShowInputOutputAndDifference) {
  auto vis = train::visualizer_registry().create(Config::parse("name: pseudo_healthy", "test"));
  data::Batch batch;
  batch.fields["image"] = torch::rand({2, 1, 24, 24});
  batch.ids = {"case_a/070", "case_b/071"};
  Outputs outputs{{"pseudo_healthy", torch::rand({2, 1, 24, 24})}};
  const std::vector<std::string> names;
  const auto png = vis->draw(train::VisualInput{batch, outputs, names}, 8);
  ASSERT_TRUE(png.has_value());
  EXPECT_EQ(vis->tag(), "pseudo_healthy");
  EXPECT_GT(png->height, 2 * 160);  // two rows of three 160 px tiles
  EXPECT_GT(png->width, 3 * 160);
  outputs["pseudo_healthy"] = torch::rand({2, 1, 12, 12});  // not the input's shape: nothing to draw
  EXPECT_FALSE(vis->draw(train::VisualInput{batch, outputs, names}, 8).has_value());

  // The segmentor's picture: input, truth and prediction per sample; without truth, two columns.
  auto seg = train::visualizer_registry().create(Config::parse("name: segmentation", "test"));
  batch.fields["mask"] = (torch::rand({2, 1, 24, 24}) > 0.5).to(torch::kFloat);
  const Outputs logits{{"logits", torch::randn({2, 2, 24, 24})}};
  const auto three = seg->draw(train::VisualInput{batch, logits, names}, 8);
  ASSERT_TRUE(three.has_value());
  EXPECT_GT(three->width, 3 * 160);
  batch.fields.erase("mask");
  const auto two = seg->draw(train::VisualInput{batch, logits, names}, 8);
  ASSERT_TRUE(two.has_value());
  EXPECT_LT(two->width, 3 * 160);
  EXPECT_EQ(model_registry().create(Config::parse("name: unet\nwidth: 2", "t"))->default_visualizer(), "segmentation");
}

// Model `unet` segments, and its checkpoint becomes pseudo_healthy's reference segmentor with the
// init_weights entry experiments/generative/gvs_segmentor.yaml gives.
TEST(PseudoHealthy, ATrainedUNetLoadsAsTheReferenceSegmentor) {
  auto unet = model_registry().create(Config::parse("name: unet\nwidth: 2", "test"));
  data::Batch batch;
  batch.fields["image"] = torch::randn({2, 1, 16, 16});
  batch.indices = torch::arange(2);
  EXPECT_EQ(unet->forward(batch).at("logits").sizes(), (std::vector<int64_t>{2, 2, 16, 16}));
  safetensors::TensorMap saved;
  for (const auto& p : unet->named_parameters()) saved[p.key()] = p.value().detach().clone();
  for (const auto& b : unet->named_buffers()) saved[b.key()] = b.value().detach().clone();
  const auto file = test_support::scratch_path("pseudo_healthy", "segmentor.safetensors");
  safetensors::save(file, saved);

  auto model = tiny_model("reference_segmentor: true");
  init_weights(*model, Config::parse("w:\n  - {path: '" + file.string() + "', strip_prefix: unet., add_prefix: reference_segmentor.}", "t")
                           .at("w"));
  unet->eval();
  model->eval();
  torch::NoGradGuard no_grad;
  const auto out = model->forward(batch);
  expect_close(out.at("lesion_logits"), unet->forward(batch).at("logits"), 1e-6, "the reference segmentor on the input");
  EXPECT_THAT(test_support::message_of([] { model_registry().create(Config::parse("name: unet\nimage_field: ct", "t"))->forward(data::Batch{}); }),
              HasSubstr("no field \"ct\" (model.image_field)"));
}

}  // namespace facet::test_pseudo_healthy
