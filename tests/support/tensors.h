// Tensor helpers the model tests share: parameter counts (checked against the papers' and the
// reference libraries' figures) and closeness on an output's own scale.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

namespace facet::test_support {

inline int64_t parameter_count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// |a - b| <= tol * max|b| elementwise: a relative tolerance on the output's scale. The relative
// error is recorded as a test property (it lands in the ctest / JUnit output).
inline void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, tol * scale) << what << ": max diff " << diff << " at scale " << scale;
  ::testing::Test::RecordProperty(what, std::to_string(diff / scale));
}

}  // namespace facet::test_support
