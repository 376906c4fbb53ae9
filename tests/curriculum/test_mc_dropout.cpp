// MC-dropout scores (curriculum/mc_dropout.h) on their own: BatchNorm running statistics and the
// model's modes unchanged by the passes, spread only where dropout acts, the detector form (top-k
// scores padded) by hand, and the errors.
#include "core/config.h"
#include "curriculum/mc_dropout.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::curriculum::test_mc_dropout {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<models::Model> cnn(double dropout) {
  return models::model_registry().create(
      Config::parse(fmt::format("{{name: simple_cnn, in_channels: 1, num_classes: 4, widths: [8, 16], dropout: {}}}", dropout)));
}

data::Batch images(int64_t b) {
  torch::manual_seed(0);
  data::Batch batch;
  batch.fields["image"] = torch::randn({b, 1, 16, 16});
  batch.indices = torch::arange(b, torch::kLong);
  return batch;
}

TEST(McDropout, PassesLeaveBatchNormStatisticsAndModesAlone) {
  auto model = cnn(0.5);
  model->train();
  const auto batch = images(6);
  model->forward(batch);  // running statistics away from their initial values
  std::vector<torch::Tensor> before;
  for (const auto& b : model->buffers()) before.push_back(b.clone());
  McDropoutOptions o;
  o.passes = 6;
  const auto v = mc_dropout_variance(*model, batch, o);
  ASSERT_EQ(v.sizes(), torch::IntArrayRef({6}));
  EXPECT_TRUE((v > 0).all().item<bool>()) << v;
  const auto after = model->buffers();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i], before[i])) << "buffer " << i;
  EXPECT_TRUE(model->is_training());
  for (const auto& m : model->modules()) EXPECT_TRUE(m->is_training());
  // Dropout 0: every pass is the same model in eval mode.
  auto steady = cnn(0.0);
  EXPECT_EQ(mc_dropout_variance(*steady, batch, o).abs().max().item<float>(), 0.0f);
}

// A model whose outputs are per-image detection scores: the top 3, sorted, zero-padded.
class FakeDetector : public models::Model {
 public:
  explicit FakeDetector(bool with_dropout = true) {
    if (with_dropout) drop_ = register_module("drop", torch::nn::Dropout(0.5));
  }
  Outputs forward(const data::Batch&) override {
    ++calls;
    Outputs out;
    // Image 0: scores that alternate between passes; image 1: the same single score every pass.
    out.ragged["scores"] = {calls % 2 ? torch::tensor({0.9f, 0.2f, 0.5f, 0.1f}) : torch::tensor({0.5f, 0.9f, 0.2f}),
                            torch::tensor({0.7f})};
    return out;
  }
  int calls = 0;

 private:
  torch::nn::Dropout drop_{nullptr};
};

TEST(McDropout, DetectorScoresAreTheTopKPaddedWithZeros) {
  FakeDetector d;
  data::Batch batch = images(2);
  McDropoutOptions o;
  o.passes = 2;
  o.top_k = 3;
  const auto v = mc_dropout_variance(d, batch, o);
  // Image 0: sorted top 3 are (0.9, 0.5, 0.2) in both passes -> 0; image 1: (0.7, 0, 0) twice -> 0.
  EXPECT_NEAR(v[0].item<float>(), 0.0f, 1e-7);
  o.top_k = 4;  // (0.9, 0.5, 0.2, 0.1) vs (0.9, 0.5, 0.2, 0): variance 0.0025 at the 4th rank, mean 0.000625
  const auto w = mc_dropout_variance(d, batch, o);
  EXPECT_NEAR(w[0].item<float>(), 0.000625f, 1e-7);
  EXPECT_NEAR(w[1].item<float>(), 0.0f, 1e-7);
}

TEST(McDropout, RefusesModelsWithoutDropoutAndMissingOutputs) {
  FakeDetector no_dropout(false);
  McDropoutOptions o;
  EXPECT_THAT(test_support::message_of([&] { mc_dropout_variance(no_dropout, images(2), o); }), HasSubstr("has no dropout module"));
  EXPECT_EQ(no_dropout.calls, 0);
  o.output = "embeddings";
  EXPECT_THAT(test_support::message_of([&] { mc_dropout_variance(*cnn(0.5), images(2), o); }),
              HasSubstr("neither a tensor nor per-sample \"embeddings\""));
  o.output.clear();
  o.passes = 1;
  EXPECT_THAT(test_support::message_of([&] { mc_dropout_variance(*cnn(0.5), images(2), o); }), HasSubstr("passes must be at least 2"));
}

}  // namespace
}  // namespace facet::curriculum::test_mc_dropout
