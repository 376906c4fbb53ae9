// What every GPU test starts with: the device it runs on. On a machine where LibTorch sees no GPU
// the tests skip, saying so; the executable is still built by every `make test`, so it never goes
// stale. FACET_GPU_TESTS_ON_CPU=1 rehearses the test bodies on the CPU (to check the tests
// themselves on a machine without a GPU; the CUDA-only assertions, pinned memory and NCCL, are
// then skipped inside).
#pragma once

#include "tests/support/paths.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace facet::gpu_test {

inline bool rehearsal() {
  const char* v = std::getenv("FACET_GPU_TESTS_ON_CPU");
  return v && std::string(v) == "1";
}

inline std::optional<torch::Device> device() {
  if (torch::cuda::is_available()) return torch::Device(torch::kCUDA, 0);
  if (rehearsal()) return torch::Device(torch::kCPU);
  return std::nullopt;
}

inline const char* kNoGpu =
    "no GPU: torch::cuda::is_available() is false (the CUDA configuration is built, nothing run; "
    "FACET_GPU_TESTS_ON_CPU=1 rehearses these tests on the CPU)";

// The source tree (experiments, tools) and the venv's Python (tests/support/paths.h).
inline std::filesystem::path source(const std::string& relative) { return test_support::source_path(relative); }
inline std::string python() { return test_support::kPython; }

// Waits for the device's queued work (a no-op on the CPU).
inline void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

}  // namespace facet::gpu_test

// Declares `name`, the device the test runs on, or skips the test when there is none.
#define FACET_GPU_DEVICE(name)                                            \
  const auto facet_gpu_device_ = ::facet::gpu_test::device();             \
  if (!facet_gpu_device_) GTEST_SKIP() << ::facet::gpu_test::kNoGpu;      \
  const torch::Device name = *facet_gpu_device_
