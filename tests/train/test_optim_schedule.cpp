#include "core/config.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace facet::train {
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

TEST(Schedule, CosineWithWarmup) {
  auto s = schedule_registry().create(Config::parse("name: cosine\nwarmup_steps: 10\nwarmup_factor: 0.0"), 110);
  EXPECT_DOUBLE_EQ(s->factor(0), 0.0);
  EXPECT_NEAR(s->factor(5), 0.5, 1e-12);
  EXPECT_NEAR(s->factor(10), 1.0, 1e-12);
  EXPECT_NEAR(s->factor(60), 0.5, 1e-12);
  EXPECT_NEAR(s->factor(110), 0.0, 1e-12);
}

TEST(Schedule, MultistepPolyConstant) {
  auto m = schedule_registry().create(Config::parse("name: multistep\nmilestones: [3, 6]\ngamma: 0.5"), 10);
  EXPECT_DOUBLE_EQ(m->factor(2), 1.0);
  EXPECT_DOUBLE_EQ(m->factor(3), 0.5);
  EXPECT_DOUBLE_EQ(m->factor(9), 0.25);
  auto p = schedule_registry().create(Config::parse("name: poly\npower: 2"), 10);
  EXPECT_NEAR(p->factor(5), 0.25, 1e-12);
  auto c = schedule_registry().create(Config::parse("name: constant"), 10);
  EXPECT_DOUBLE_EQ(c->factor(7), 1.0);
}

TEST(Schedule, AppliesToEveryGroup) {
  auto a = torch::zeros({1}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  auto opt = optimizer_registry().create(Config::parse("name: sgd\nlr: 1"), {{"a", {a}, 1.0, 0}, {"b", {b}, 0.1, 0}});
  auto s = schedule_registry().create(Config::parse("name: multistep\nmilestones: [1]"), 5);
  apply_learning_rates(*opt, {1.0, 0.1}, *s, 1);
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.1);
  EXPECT_NEAR(opt->param_groups()[1].options().get_lr(), 0.01, 1e-15);
}

}  // namespace
}  // namespace facet::train
