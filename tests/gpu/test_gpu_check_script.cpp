// tools/gpu_check.sh (`make gpu-check`) on a machine without a GPU: it parses, its no-GPU branch
// says so and exits 0, its GPU branch plans the commands the table needs, and the test filters it
// names exist in this executable. Runs everywhere (nothing is built or run by the dry runs), so the
// script cannot go stale before the day a GPU is at hand.
#include "tests/gpu/gpu.h"
#include "tests/support/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

namespace facet::test_gpu_check_script {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kScript = gpu_test::source("tools/gpu_check.sh").string();

// Output (stdout and stderr) and exit code of a shell command.
std::pair<std::string, int> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {"popen failed", -1};
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST(GpuCheckScript, ParsesAndItsNoGpuBranchExitsZero) {
  const auto [syntax, syntax_code] = shell("bash -n " + kScript);
  EXPECT_EQ(syntax_code, 0) << syntax;
  const auto build = test_support::scratch_path("facet_gpu_check", "none");
  const auto [out, code] = shell("FACET_GPU_CHECK_ASSUME=none " + kScript + " --dry-run --build " + build.string());
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, AllOf(HasSubstr("+ cmake --build " + build.string() + " -j"), HasSubstr("--target facet facet_gpu_tests train_step_bench"),
                         HasSubstr("no GPU: built the CUDA configuration, nothing run"), Not(HasSubstr("facet_gpu_tests --gtest"))));
  const auto [help, help_code] = shell(kScript + " --help");
  EXPECT_EQ(help_code, 0);
  EXPECT_THAT(help, AllOf(HasSubstr("`make gpu-check`"), HasSubstr("--dry-run prints"), Not(HasSubstr("set -euo"))));
  const auto [bad, bad_code] = shell(kScript + " --frobnicate");
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("unknown argument --frobnicate"));
}

TEST(GpuCheckScript, ItsGpuBranchPlansTheTestsTwoRanksAndBenchmarks) {
  const auto build = test_support::scratch_path("facet_gpu_check", "gpu");
  const auto [out, code] = shell("FACET_GPU_CHECK_ASSUME=gpu " + kScript + " --dry-run --rounds 1 --python " + gpu_test::python() +
                                 " --build " + build.string());
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, AllOf(HasSubstr("tests/facet_gpu_tests --gtest_filter=-GpuTwoRanks.*"),
                         HasSubstr("--gtest_filter=GpuTwoRanks.CollectivesOnOneGpu"),
                         HasSubstr("bench/train_step_bench --model resnet50 --batch 64 --size 224 --steps 30 --warmup 10 --device cuda --dtype bf16"),
                         HasSubstr("bench/train_step.py --model vit_b16"), HasSubstr("check"), HasSubstr("seconds / figure"),
                         HasSubstr("train step ViT-B/16 bf16"), HasSubstr("two ranks on one GPU")));
  std::filesystem::remove_all(build);
  // The filters the script passes name tests of this executable.
  bool two_ranks = false, placement = false;
  const auto& unit = *::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit.total_test_suite_count(); ++i) {
    const auto& suite = *unit.GetTestSuite(i);
    for (int j = 0; j < suite.total_test_count(); ++j) {
      const std::string name = std::string(suite.name()) + "." + suite.GetTestInfo(j)->name();
      two_ranks = two_ranks || name == "GpuTwoRanks.CollectivesOnOneGpu";
      placement = placement || name.starts_with("Models/GpuPlacement.");
    }
  }
  EXPECT_TRUE(two_ranks);
  EXPECT_TRUE(placement) << "the table's row names expect Models/GpuPlacement";
}

// The benchmark's Python side takes --device and --dtype (and refuses CUDA where there is none).
TEST(GpuCheckScript, TrainStepPythonBenchTakesDeviceAndDtype) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present: the no-CUDA refusal cannot be seen";
  const auto [out, code] = shell(gpu_test::python() + " " + gpu_test::source("bench/train_step.py").string() + " --device cuda --dtype bf16");
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, HasSubstr("--device cuda, but no CUDA device is usable"));
}

}  // namespace
}  // namespace facet::test_gpu_check_script
