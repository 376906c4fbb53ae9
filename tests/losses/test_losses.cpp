// Losses against hand-computed values: masked and weighted BCE (both normalisations, pos_weight),
// JAA-Net Dice, EMMA's batch CCC, masked L1, cross-entropy ignoring missing labels, the
// Jensen-Shannon term of Masked CoTEX and weighted sums; `weights: auto` from AU training labels.
#include "core/config.h"
#include "data/face/au.h"
#include "losses/consistency.h"
#include "losses/loss.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace facet::losses::test_losses {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::shared_ptr<Loss> make(const std::string& yaml) { return loss_registry().create(Config::parse(yaml, "loss.yaml")); }

double bce(double logit, double y, double pos_weight = 1) {
  const double p = 1 / (1 + std::exp(-logit));
  return -(pos_weight * y * std::log(p) + (1 - y) * std::log(1 - p));
}

data::Batch two_by_two() {
  data::Batch b;
  b.fields["labels"] = torch::tensor({{1.f, 0.f}, {0.f, 1.f}});
  b.fields["label_mask"] = torch::tensor({{1.f, 1.f}, {1.f, 0.f}});  // sample 1's second label unknown
  b.indices = torch::arange(2);
  return b;
}

TEST(Losses, WeightedBceMasksUnknownLabelsAndNormalisesPerLabelOrPerBatch) {
  const data::Batch b = two_by_two();
  const TensorDict out = {{"logits", torch::tensor({{2.f, -1.f}, {0.5f, 3.f}})}};
  // Per label (JAA-Net): label 0 has both samples, label 1 only sample 0.
  const double l0 = (bce(2, 1) + bce(0.5, 0)) / 2, l1 = bce(-1, 0);
  EXPECT_NEAR((*make("{name: weighted_bce}"))(out, b).total.item<double>(), (l0 + l1) / 2, 1e-6);
  // Label weights multiply each label's term.
  EXPECT_NEAR((*make("{name: weighted_bce, weights: [0.5, 1.5]}"))(out, b).total.item<double>(), (0.5 * l0 + 1.5 * l1) / 2, 1e-6);
  // EMMA: pos_weight on positives, the sum over known entries divided by the batch size.
  const auto r = (*make("{name: weighted_bce, pos_weight: [3.0, 2.0], normalize: batch}"))(out, b);
  EXPECT_NEAR(r.total.item<double>(), (bce(2, 1, 3) + bce(-1, 0, 2) + bce(0.5, 0, 3)) / 2, 1e-6);
  // Per-sample losses average each sample's known labels.
  const auto plain = (*make("{name: weighted_bce}"))(out, b);
  EXPECT_NEAR(plain.per_sample[1].item<double>(), bce(0.5, 0), 1e-6);
}

TEST(Losses, AutoWeightsComeFromTheTrainingLabels) {
  // Occurrence rates 1/2 and 1/4 -> inverse rates 2 and 4 -> normalised to sum to 2: 2/3, 4/3.
  class Source : public data::Dataset, public data::face::AuLabelSource {
   public:
    int64_t size() const override { return 4; }
    data::Sample get(int64_t, uint64_t) const override { return {}; }
    torch::Tensor all_labels() const override { return torch::tensor({{1.f, 1.f}, {1.f, 0.f}, {0.f, 0.f}, {0.f, 0.f}}); }
    torch::Tensor all_label_masks() const override { return torch::ones({4, 2}); }
    std::vector<std::string> au_label_names() const override { return {"AU1", "AU2"}; }
  } train;
  auto loss = make("{name: weighted_bce, weights: auto}");
  loss->prepare(train);
  const data::Batch b = two_by_two();
  const TensorDict out = {{"logits", torch::tensor({{2.f, -1.f}, {0.5f, 3.f}})}};
  const double l0 = (bce(2, 1) + bce(0.5, 0)) / 2, l1 = bce(-1, 0);
  EXPECT_NEAR((*loss)(out, b).total.item<double>(), (2.0 / 3 * l0 + 4.0 / 3 * l1) / 2, 1e-6);
  class Plain : public data::Dataset {
   public:
    int64_t size() const override { return 1; }
    data::Sample get(int64_t, uint64_t) const override { return {}; }
  } plain;
  try {
    make("{name: weighted_bce, weights: auto}")->prepare(plain);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("loss.yaml:1: weights: auto needs a dataset with AU labels"));
  }
}

TEST(Losses, DiceIsJaaNetsPerLabelDice) {
  const data::Batch b = two_by_two();
  const TensorDict out = {{"logits", torch::tensor({{0.f, 0.f}, {0.f, 0.f}})}};  // p = 0.5 everywhere
  // Label 0: p = (0.5, 0.5), t = (1, 0): 1 - (2*0.5 + 1) / (0.5 + 1 + 1); label 1: only sample 0 (t = 0).
  const double d0 = 1 - (2 * 0.5 + 1) / (0.25 + 0.25 + 1 + 1), d1 = 1 - (0 + 1) / (0.25 + 0 + 1);
  EXPECT_NEAR((*make("{name: au_dice}"))(out, b).total.item<double>(), (d0 + d1) / 2, 1e-6);
  // JAA-Net's released quirk divides the ratio by the batch size.
  const double q0 = 1 - (2 * 0.5 + 1) / (0.25 + 0.25 + 1 + 1) / 2, q1 = 1 - (0 + 1) / (0.25 + 0 + 1) / 2;
  EXPECT_NEAR((*make("{name: au_dice, divide_by_batch: true}"))(out, b).total.item<double>(), (q0 + q1) / 2, 1e-6);
}

TEST(Losses, CccLossIsEmmasBatchConcordance) {
  data::Batch b;
  b.fields["va"] = torch::tensor({{0.1f, 0.5f}, {0.4f, -0.2f}, {-0.3f, 0.0f}, {0.9f, -5.f}});
  b.fields["va_mask"] = torch::tensor({{1.f, 1.f}, {1.f, 1.f}, {1.f, 1.f}, {1.f, 0.f}});  // -5 = missing arousal
  b.indices = torch::arange(4);
  const torch::Tensor pred = torch::tensor({{0.0f, 0.4f}, {0.5f, -0.1f}, {-0.2f, 0.2f}, {0.7f, 3.f}});
  auto ccc = [](std::vector<double> x, std::vector<double> y) {
    const double n = static_cast<double>(x.size()), eps = 1e-4;
    double mx = 0, my = 0;
    for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
    double sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < x.size(); ++i) sxx += (x[i] - mx) * (x[i] - mx), syy += (y[i] - my) * (y[i] - my), sxy += (x[i] - mx) * (y[i] - my);
    const double rho = sxy / (std::sqrt(sxx) * std::sqrt(syy) + eps);
    const double sx = std::sqrt(sxx / (n - 1)), sy = std::sqrt(syy / (n - 1));
    return 2 * rho * sx * sy / (sx * sx + sy * sy + (mx - my) * (mx - my) + eps);
  };
  const double expected = (1 - ccc({0.0, 0.5, -0.2, 0.7}, {0.1, 0.4, -0.3, 0.9})) + (1 - ccc({0.4, -0.1, 0.2}, {0.5, -0.2, 0.0}));
  EXPECT_NEAR((*make("{name: ccc}"))({{"va", pred}}, b).total.item<double>(), expected, 1e-5);
}

TEST(Losses, CccGradientsStayFiniteForConstantAndAlmostUnlabelledColumns) {
  // Arousal known on one sample only (CCC 1 by convention, no gradient); valence predicted as a
  // constant (zero variance). Both used to give NaN gradients through sqrt at 0.
  data::Batch b;
  b.fields["va"] = torch::tensor({{0.1f, 0.5f}, {0.4f, -5.f}, {-0.3f, -5.f}});
  b.fields["va_mask"] = torch::tensor({{1.f, 1.f}, {1.f, 0.f}, {1.f, 0.f}});
  b.indices = torch::arange(3);
  const torch::Tensor pred = torch::tensor({{0.2f, 0.3f}, {0.2f, 0.1f}, {0.2f, -0.4f}}).requires_grad_();
  const auto r = (*make("{name: ccc}"))({{"va", pred}}, b);
  r.total.backward();
  EXPECT_TRUE(torch::isfinite(pred.grad()).all().item<bool>()) << pred.grad();
  EXPECT_TRUE(torch::equal(pred.grad().select(1, 1), torch::zeros({3}))) << "arousal has one known sample";
  // A constant prediction has CCC 0 for valence: loss 1 + 0 for arousal.
  EXPECT_NEAR(r.total.item<double>(), 1.0, 1e-6);
}

TEST(Losses, AConfiguredMaskMustBeInTheBatch) {
  data::Batch b;
  b.fields["va"] = torch::zeros({2, 2});
  b.indices = torch::arange(2);
  const TensorDict out{{"va", torch::zeros({2, 2})}};
  // The default name may be absent (nothing missing); a name the config sets may not.
  EXPECT_NO_THROW((*make("{name: ccc}"))(out, b));
  EXPECT_THAT(test_support::message_of([&] { (*make("{name: ccc, mask: va_msk}"))(out, b); }),
              AllOf(HasSubstr("loss.yaml:1"), HasSubstr(": mask: the batch has no field \"va_msk\"")));
  b.fields["labels"] = torch::zeros({2, 3});
  const TensorDict logits{{"logits", torch::zeros({2, 3})}};
  EXPECT_THAT(test_support::message_of([&] { (*make("{name: weighted_bce, mask: label_msk}"))(logits, b); }),
              HasSubstr("mask: the batch has no field \"label_msk\""));
  b.fields["label_mask"] = torch::ones({2, 4});
  EXPECT_THAT(test_support::message_of([&] { (*make("{name: weighted_bce}"))(logits, b); }),
              HasSubstr("mask \"label_mask\" is [2, 4], the values it masks are [2, 3]"));
}

TEST(Losses, CrossEntropyIgnoresMissingLabelsAndL1MasksUnknownTargets) {
  data::Batch b;
  b.fields["expression"] = torch::tensor({2, -1, 0}, torch::kInt64);
  b.fields["age"] = torch::tensor({30.f, 50.f, 0.f});
  b.fields["age_mask"] = torch::tensor({1.f, 1.f, 0.f});
  b.indices = torch::arange(3);
  const torch::Tensor logits = torch::tensor({{0.f, 1.f, 2.f}, {5.f, 0.f, 0.f}, {1.f, 1.f, 1.f}});
  const double lse0 = std::log(std::exp(0.0) + std::exp(1.0) + std::exp(2.0)), lse2 = std::log(3 * std::exp(1.0));
  const auto ce = (*make("{name: cross_entropy, target: expression, ignore_index: -1}"))({{"logits", logits}}, b);
  EXPECT_NEAR(ce.total.item<double>(), ((lse0 - 2) + (lse2 - 1)) / 2, 1e-6);  // the -1 sample is left out of the mean
  const auto l1 = (*make("{name: l1, pred: age}"))({{"age", torch::tensor({33.f, 45.f, 99.f})}}, b);
  EXPECT_NEAR(l1.total.item<double>(), (3 + 5) / 2.0, 1e-6);
}

TEST(Losses, JensenShannonAndMultiViewCeJs) {
  // Two views: p = (1, 0) and q = (0.5, 0.5); M = (0.75, 0.25).
  const torch::Tensor probs = torch::tensor({{{1.f, 0.f}}, {{0.5f, 0.5f}}});
  const double kl_p = 1 * (std::log(1.0) - std::log(0.75)), kl_q = 0.5 * (std::log(0.5) - std::log(0.75)) + 0.5 * (std::log(0.5) - std::log(0.25));
  // Each KL averaged over its B x C = 2 elements, then over the views.
  EXPECT_NEAR(js_divergence(probs).item<double>(), (kl_p / 2 + kl_q / 2) / 2, 1e-6);
  data::Batch b;
  b.fields["label"] = torch::tensor({0}, torch::kInt64);
  b.indices = torch::arange(1);
  const torch::Tensor views = torch::tensor({{{2.f, 0.f}}, {{0.f, 0.f}}});  // [V=2, B=1, C=2]
  const auto r = (*make("{name: multi_view_ce_js, js_weight: 100}"))({{"view_logits", views}}, b);
  const double ce = (std::log(1 + std::exp(-2.0)) + std::log(2.0)) / 2;
  const torch::Tensor p = torch::softmax(views, -1);
  EXPECT_NEAR(r.parts.at("ce").item<double>(), ce, 1e-6);
  EXPECT_NEAR(r.total.item<double>(), ce + 100 * js_divergence(p).item<double>(), 1e-5);
}

TEST(Losses, WeightedSumAddsTermsAndLabelsTheirParts) {
  const data::Batch b = two_by_two();
  const TensorDict out = {{"logits", torch::tensor({{2.f, -1.f}, {0.5f, 3.f}})}};
  auto sum = make(R"({name: weighted_sum, terms: [{label: bce, weight: 2.0, loss: {name: weighted_bce}},
                                                  {label: dice, weight: 0.5, loss: {name: au_dice}}]})");
  const auto r = (*sum)(out, b);
  const double bce_v = (*make("{name: weighted_bce}"))(out, b).total.item<double>();
  const double dice_v = (*make("{name: au_dice}"))(out, b).total.item<double>();
  EXPECT_NEAR(r.total.item<double>(), 2 * bce_v + 0.5 * dice_v, 1e-6);
  EXPECT_TRUE(r.parts.contains("bce/bce"));
  EXPECT_TRUE(r.parts.contains("dice/dice"));
  EXPECT_FALSE(r.per_sample.defined());  // Dice has no per-sample value
}

}  // namespace
// Segmentation: logits [B, 2, 1, 2] against a float mask [B, 1, 1, 2]. Each pixel's logits differ by
// ln 3, for the true class or against it; each pixel's value is spelt out below.
TEST(Losses, CrossEntropyPerPixelAgainstAMaskField) {
  auto ce = make("{name: cross_entropy, target: mask}");
  const double l3 = std::log(3.0);
  // Sample 0: pixel 0 truth 0 with logits (0, ln 3) -> ln 4; pixel 1 truth 1 with (0, ln 3) -> ln(4/3).
  // Sample 1: both truth 1 with logits (ln 3, 0) -> ln 4 each.
  const TensorDict out = {{"logits", torch::tensor({0.0, 0.0, l3, l3, l3, l3, 0.0, 0.0}, torch::kFloat).view({2, 2, 1, 2})}};
  data::Batch b;
  b.fields["mask"] = torch::tensor({0.f, 1.f, 1.f, 1.f}).view({2, 1, 1, 2});
  b.indices = torch::arange(2);
  const auto r = (*ce)(out, b);
  const double ln4 = std::log(4.0), ln43 = std::log(4.0 / 3.0);
  EXPECT_NEAR(r.total.item<double>(), (ln4 + ln43 + 2 * ln4) / 4, 1e-6);
  EXPECT_NEAR(r.per_sample[0].item<double>(), (ln4 + ln43) / 2, 1e-6);
  EXPECT_NEAR(r.per_sample[1].item<double>(), ln4, 1e-6);
  // An integer class map [B, H, W] with ignored pixels: the mean over the known ones.
  b.fields["mask"] = torch::tensor({0, -100, 1, 1}, torch::kLong).view({2, 1, 2});
  const auto ignored = (*ce)(out, b);
  EXPECT_NEAR(ignored.total.item<double>(), (ln4 + 2 * ln4) / 3, 1e-6);
  EXPECT_NEAR(ignored.per_sample[0].item<double>(), ln4, 1e-6);
  // Class probabilities shaped like the logits stay soft targets: sample 0's pixels at (1/2, 1/2).
  b.fields["mask"] = torch::full({2, 2, 1, 2}, 0.5f);
  const auto soft = (*ce)(out, b);
  EXPECT_NEAR(soft.per_sample[0].item<double>(), 0.5 * (ln4 + ln43), 1e-6);
  EXPECT_NEAR(soft.total.item<double>(), 0.5 * (ln4 + ln43), 1e-6);
}

}  // namespace facet::losses::test_losses
