#include "core/config.h"
#include "models/model.h"
#include "train/fused_optimizers.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <sstream>

namespace facet::train::test_optim_schedule {
namespace {

using ::testing::HasSubstr;

struct TwoPartNet : torch::nn::Module {
  TwoPartNet() {
    backbone = register_module("backbone", torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::LayerNorm(
                                                                     torch::nn::LayerNormOptions({8}))));
    head = register_module("head", torch::nn::Linear(8, 2));
  }
  torch::nn::Sequential backbone;
  torch::nn::Linear head{nullptr};
};

TEST(Optimizer, LayerDecayScalesEachDepthsLearningRate) {
  // A 2-block ViT: ids 0 (embeddings), 1, 2 (blocks), 3 (final norm and head).
  auto vit = models::model_registry().create(
      Config::parse("{name: vit, image_size: 32, patch_size: 16, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 3}"));
  const auto groups = make_param_groups(Config::parse("{name: adamw, lr: 0.8, weight_decay: 0.05, layer_decay: 0.5, "
                                                      "no_decay: ['*cls_token', '*pos_embed']}"),
                                        *vit);
  std::map<std::string, double> lr_of;
  for (const auto& g : groups)
    for (const auto& [name, p] : vit->named_parameters().pairs())
      for (const auto& q : g.params)
        if (q.is_same(p)) lr_of[name] = g.lr;
  EXPECT_DOUBLE_EQ(lr_of.at("vit.cls_token"), 0.1);
  EXPECT_DOUBLE_EQ(lr_of.at("vit.patch_embed.proj.weight"), 0.1);
  EXPECT_DOUBLE_EQ(lr_of.at("vit.blocks.0.attn.qkv.weight"), 0.2);
  EXPECT_DOUBLE_EQ(lr_of.at("vit.blocks.1.mlp.fc2.bias"), 0.4);
  EXPECT_DOUBLE_EQ(lr_of.at("vit.norm.weight"), 0.8);
  EXPECT_DOUBLE_EQ(lr_of.at("head.weight"), 0.8);
  for (const auto& g : groups)
    if (g.label.find("(no decay)") != std::string::npos) {
      EXPECT_EQ(g.weight_decay, 0.0) << g.label;
    }
  TwoPartNet plain;
  try {
    make_param_groups(Config::parse("{name: sgd, lr: 0.1, layer_decay: 0.5}", "o.yaml"), plain);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("o.yaml:1: layer_decay: this model has no layer depths"));
  }
}

TEST(Optimizer, GlobMatch) {
  EXPECT_TRUE(glob_match("backbone.*", "backbone.0.weight"));
  EXPECT_TRUE(glob_match("*.bias", "head.bias"));
  EXPECT_TRUE(glob_match("*norm*", "layers.3.norm1.weight"));
  EXPECT_FALSE(glob_match("backbone.*", "head.weight"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("a*b", "acbd"));
}

TEST(Optimizer, GroupsSplitDecayLrMultipliersAndFreeze) {
  TwoPartNet net;
  const auto c = Config::parse(R"(
name: adamw
lr: 0.01
weight_decay: 0.05
groups: [{match: "backbone.*", lr_mult: 0.1}]
freeze: ["backbone.1.*"]
)");
  const auto groups = make_param_groups(c, net);
  // backbone.0.weight (decay, ×0.1), backbone.0.bias (no decay, ×0.1), head.weight, head.bias.
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].label, "backbone.* (decay)");
  EXPECT_DOUBLE_EQ(groups[0].lr, 0.001);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.05);
  EXPECT_EQ(groups[1].label, "backbone.* (no decay)");
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(groups[2].lr, 0.01);
  EXPECT_FALSE(net.backbone[1]->parameters()[0].requires_grad()) << "LayerNorm was frozen";
  auto optimizer = optimizer_registry().create(c, groups);
  ASSERT_EQ(optimizer->param_groups().size(), 4u);
  EXPECT_DOUBLE_EQ(optimizer->param_groups()[0].options().get_lr(), 0.001);
}

TEST(Optimizer, PatternsThatMatchNothingAreErrors) {
  TwoPartNet net;
  try {
    make_param_groups(Config::parse("optim: {name: sgd, lr: 0.1, freeze: [\"encoder.*\"]}", "x.yaml").at("optim"), net);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("optim.freeze: \"encoder.*\" matches no parameter"));
  }
}

TEST(Optimizer, SgdNesterovMatchesHandComputedUpdate) {
  auto w = torch::tensor({1.0}, torch::requires_grad());
  GroupSpec g{"all", {w}, 0.1, 0.0};
  auto opt = optimizer_registry().create(Config::parse("name: sgd\nlr: 0.1\nmomentum: 0.9\nnesterov: true"), {g});
  for (int i = 0; i < 2; ++i) {
    opt->zero_grad();
    (w * w).sum().backward();  // grad = 2w
    opt->step();
  }
  // step 1: g=2, b=2, w=1-0.1*(2+0.9*2)=0.62; step 2: g=1.24, b=0.9*2+1.24=3.04, w=0.62-0.1*(1.24+0.9*3.04)
  EXPECT_NEAR(w.item<double>(), 0.62 - 0.1 * (1.24 + 0.9 * 3.04), 1e-6);
}

// Runs `steps` optimiser steps of the config on fresh parameters (float and double, one whose
// gradient first appears at step 2, as a branch that starts training late), returns them.
std::vector<torch::Tensor> train_quadratic(const std::string& yaml, int steps,
                                           torch::optim::Optimizer* resume_from = nullptr,
                                           std::unique_ptr<torch::optim::Optimizer>* keep = nullptr) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> params = {torch::randn({5, 3}).requires_grad_(), torch::randn({7}).requires_grad_(),
                                       torch::randn({4}, torch::kDouble).requires_grad_()};
  const std::vector<torch::Tensor> targets = {torch::randn({5, 3}), torch::randn({7}), torch::randn({4}, torch::kDouble)};
  auto opt = optimizer_registry().create(Config::parse(yaml), {{"decay", {params[0], params[2]}, 0.05, 0.1},
                                                               {"no decay", {params[1]}, 0.02, 0.0}});
  if (resume_from) {
    // Checkpoint round trip: the other implementation's state, through LibTorch's serialisation.
    std::stringstream buffer;
    torch::serialize::OutputArchive out;
    resume_from->save(out);
    out.save_to(buffer);
    torch::serialize::InputArchive in;
    in.load_from(buffer);
    opt->load(in);
  }
  for (int i = 0; i < steps; ++i) {
    opt->zero_grad();
    torch::Tensor loss = (params[0] - targets[0]).pow(2).sum() * 3 + (params[2] - targets[2]).pow(4).sum();
    if (i > 0 || resume_from) loss = loss + (params[1] - targets[1]).abs().sum();
    loss.backward();
    opt->step();
  }
  if (keep) *keep = std::move(opt);
  return params;
}

TEST(Optimizer, FusedKernelsMatchLibTorchsLoop) {
  for (const std::string optim : {"name: sgd\nlr: 1\nmomentum: 0.9\ndampening: 0.1",
                                  "name: sgd\nlr: 1\nmomentum: 0.8\nnesterov: true", "name: sgd\nlr: 1",
                                  "name: adam\nlr: 1\nbetas: [0.8, 0.95]", "name: adam\nlr: 1\namsgrad: true",
                                  "name: adamw\nlr: 1\neps: 1e-6", "name: adamw\nlr: 1\namsgrad: true"}) {
    SCOPED_TRACE(optim);
    const auto fused = train_quadratic(optim, 6);
    const auto loop = train_quadratic(optim + "\nfused: false", 6);
    const auto start = train_quadratic(optim, 0);
    for (size_t i = 0; i < fused.size(); ++i) {
      EXPECT_GT((loop[i] - start[i]).abs().max().item<double>(), 1e-3) << "parameter " << i << " did not move";
      EXPECT_TRUE(torch::allclose(fused[i], loop[i], 1e-5, 1e-6)) << "parameter " << i << ": "
                                                                   << (fused[i] - loop[i]).abs().max().item<double>();
    }
  }
}

TEST(Optimizer, FusedIsTheDefaultAndFusedFalseIsLibTorchsLoop) {
  auto w = torch::zeros({2}, torch::requires_grad());
  const GroupSpec g{"all", {w}, 0.1, 0.0};
  EXPECT_NE(dynamic_cast<FusedSGD*>(optimizer_registry().create(Config::parse("name: sgd\nlr: 0.1"), {g}).get()), nullptr);
  EXPECT_NE(dynamic_cast<FusedAdam*>(optimizer_registry().create(Config::parse("name: adam\nlr: 0.1"), {g}).get()), nullptr);
  EXPECT_NE(dynamic_cast<FusedAdamW*>(optimizer_registry().create(Config::parse("name: adamw\nlr: 0.1"), {g}).get()), nullptr);
  const auto loop = optimizer_registry().create(Config::parse("name: adamw\nlr: 0.1\nfused: false"), {g});
  EXPECT_EQ(dynamic_cast<FusedAdamW*>(loop.get()), nullptr);
  EXPECT_NE(dynamic_cast<torch::optim::AdamW*>(loop.get()), nullptr);
}

TEST(Optimizer, FusedAndLoopStatesResumeInEachOther) {
  for (const std::string optim : {"name: sgd\nlr: 1\nmomentum: 0.9", "name: adamw\nlr: 1\namsgrad: true"}) {
    SCOPED_TRACE(optim);
    std::unique_ptr<torch::optim::Optimizer> fused, loop;
    train_quadratic(optim, 3, nullptr, &fused);
    train_quadratic(optim + "\nfused: false", 3, nullptr, &loop);
    // Each continues from the other's state: the moments carried over make both runs agree.
    const auto a = train_quadratic(optim + "\nfused: false", 3, fused.get());
    const auto b = train_quadratic(optim, 3, loop.get());
    const auto cold = train_quadratic(optim, 3);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6)) << "parameter " << i;
      EXPECT_GT((a[i] - cold[i]).abs().max().item<double>(), 1e-4) << "parameter " << i << ": the state was not loaded";
    }
  }
}

TEST(Schedule, CosineWithWarmup) {
  auto s = schedule_registry().create(Config::parse("name: cosine\nwarmup_steps: 10\nwarmup_factor: 0.0"), ScheduleSpan{110});
  EXPECT_DOUBLE_EQ(s->factor(0), 0.0);
  EXPECT_NEAR(s->factor(5), 0.5, 1e-12);
  EXPECT_NEAR(s->factor(10), 1.0, 1e-12);
  EXPECT_NEAR(s->factor(60), 0.5, 1e-12);
  EXPECT_NEAR(s->factor(110), 0.0, 1e-12);
}

TEST(Schedule, MultistepPolyConstant) {
  auto m = schedule_registry().create(Config::parse("name: multistep\nmilestones: [3, 6]\ngamma: 0.5"), ScheduleSpan{10});
  EXPECT_DOUBLE_EQ(m->factor(2), 1.0);
  EXPECT_DOUBLE_EQ(m->factor(3), 0.5);
  EXPECT_DOUBLE_EQ(m->factor(9), 0.25);
  auto p = schedule_registry().create(Config::parse("name: poly\npower: 2"), ScheduleSpan{10});
  EXPECT_NEAR(p->factor(5), 0.25, 1e-12);
  auto c = schedule_registry().create(Config::parse("name: constant"), ScheduleSpan{10});
  EXPECT_DOUBLE_EQ(c->factor(7), 1.0);
}

TEST(Schedule, EpochKeysUseTheStepsPerEpoch) {
  // JAA-Net: x0.3 every 2 epochs; here an epoch is 10 optimiser steps.
  auto s = schedule_registry().create(Config::parse("name: step\nstep_epochs: 2\ngamma: 0.3"), ScheduleSpan{120, 10});
  EXPECT_DOUBLE_EQ(s->factor(19), 1.0);
  EXPECT_DOUBLE_EQ(s->factor(20), 0.3);
  EXPECT_NEAR(s->factor(45), 0.09, 1e-12);
  auto w = schedule_registry().create(Config::parse("name: cosine\nwarmup_epochs: 0.5\nwarmup_factor: 0.0"), ScheduleSpan{105, 10});
  EXPECT_NEAR(w->factor(0), 0.0, 1e-12);
  EXPECT_NEAR(w->factor(5), 1.0, 1e-12);  // warm-up over 5 steps, then the cosine starts
  auto m = schedule_registry().create(Config::parse("name: multistep\nmilestone_epochs: [1.5]"), ScheduleSpan{100, 10});
  EXPECT_DOUBLE_EQ(m->factor(14), 1.0);
  EXPECT_DOUBLE_EQ(m->factor(15), 0.1);
  try {
    schedule_registry().create(Config::parse("name: step\nstep_epochs: 2", "s.yaml"), ScheduleSpan{100});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("s.yaml:2: step_epochs: epochs are unknown here"));
  }
}

TEST(Schedule, AppliesToEveryGroup) {
  auto a = torch::zeros({1}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  auto opt = optimizer_registry().create(Config::parse("name: sgd\nlr: 1"), {{"a", {a}, 1.0, 0}, {"b", {b}, 0.1, 0}});
  auto s = schedule_registry().create(Config::parse("name: multistep\nmilestones: [1]"), ScheduleSpan{5});
  apply_learning_rates(*opt, {1.0, 0.1}, *s, 1);
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.1);
  EXPECT_NEAR(opt->param_groups()[1].options().get_lr(), 0.01, 1e-15);
}

}  // namespace
}  // namespace facet::train::test_optim_schedule
