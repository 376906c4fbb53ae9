// train/cuda_graph.h on the GPU: a graphed function's outputs and parameter gradients are the eager
// function's, over several calls with new inputs (the first call's gradients are copied out of
// the graph, later ones added in place); the warm-up leaves BatchNorm's statistics as they were;
// other input shapes are handed back to the caller.
#include "tests/gpu/gpu.h"
#include "train/cuda_graph.h"

#include <gtest/gtest.h>

namespace facet::train::test_cuda_graph {
namespace {

torch::nn::Sequential small_net() {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 8, 3).padding(1)), nn::BatchNorm2d(8), nn::ReLU(), nn::Flatten(),
                        nn::Linear(8 * 8 * 8, 4));
}

TEST(GpuCudaGraph, GraphedForwardAndBackwardAreTheEagerOnes) {
  FACET_GPU_DEVICE(device);
  if (!device.is_cuda()) GTEST_SKIP() << "CUDA graphs need a CUDA device (this is the CPU rehearsal)";
  at::globalContext().setDeterministicCuDNN(true);
  torch::manual_seed(0);
  auto net = small_net();
  torch::manual_seed(0);
  auto ref = small_net();
  net->to(device);
  ref->to(device);
  GraphedFunction graphed([&](const TensorDict& in) { return TensorDict{{"logits", net->forward(in.at("x"))}}; },
                          net->parameters(), net.get());
  for (int call = 0; call < 3; ++call) {
    const torch::Tensor x = torch::randn({16, 3, 8, 8}, device);
    const torch::Tensor y = torch::randint(0, 4, {16}, torch::TensorOptions(device).dtype(torch::kInt64));
    const auto out = graphed(TensorDict{{"x", x}});
    ASSERT_TRUE(out);
    const torch::Tensor logits = out->at("logits");
    torch::nn::functional::cross_entropy(logits, y).backward();
    const torch::Tensor ref_logits = ref->forward(x);
    torch::nn::functional::cross_entropy(ref_logits, y).backward();
    EXPECT_TRUE(torch::allclose(logits, ref_logits, 1e-4, 1e-5)) << "call " << call;
    // Gradients accumulate over the calls on both sides (never zeroed here).
    const auto p = net->parameters(), q = ref->parameters();
    for (size_t i = 0; i < p.size(); ++i) {
      ASSERT_TRUE(p[i].grad().defined()) << "parameter " << i;
      EXPECT_TRUE(torch::allclose(p[i].grad(), q[i].grad(), 1e-4, 1e-5)) << "parameter " << i << ", call " << call;
    }
  }
  EXPECT_EQ(graphed.replays(), 3);
  const auto b = net->buffers(), rb = ref->buffers();
  for (size_t i = 0; i < b.size(); ++i)
    EXPECT_TRUE(torch::allclose(b[i].to(torch::kDouble), rb[i].to(torch::kDouble), 1e-4, 1e-5))
        << "buffer " << i << ": the warm-up moved BatchNorm's statistics";
  EXPECT_FALSE(graphed(TensorDict{{"x", torch::randn({8, 3, 8, 8}, device)}})) << "a batch of 8 is not the captured 16";
}

}  // namespace
}  // namespace facet::train::test_cuda_graph
