// Two ranks on one GPU: two processes (this executable again, started fresh, since CUDA does not
// survive a fork) join a c10d group on cuda:0 and check the collectives and the gradient reducers
// with CUDA tensors. Recent NCCL refuses two ranks on one device ("Duplicate GPU detected"); then
// the ranks join a Gloo group instead and pass it CUDA tensors (staged through the host), and the
// test says so in its output and in $FACET_GPU_CHECK_OUT/two_ranks.txt for the gpu-check table.
#include "core/error.h"
#include "core/file_io.h"
#include "tests/gpu/gpu.h"
#include "tests/support/scratch.h"
#include "train/distributed.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

extern char** environ;

namespace facet::train::test_two_ranks {
namespace {

namespace fs = std::filesystem;

constexpr int kRefused = 3;  // a rank's exit code when the backend refused to connect

// The body of one rank, run by this executable started again with FACET_GPU_RANK_BACKEND set.
TEST(GpuTwoRanks, RankBody) {
  const char* backend = std::getenv("FACET_GPU_RANK_BACKEND");
  if (!backend) GTEST_SKIP() << "runs only as a rank started by GpuTwoRanks.CollectivesOnOneGpu";
  FACET_GPU_DEVICE(device);
  const fs::path out = std::getenv("FACET_GPU_RANK_OUT");
  const bool nccl = std::string(backend) == "nccl";
  const auto env = DistributedEnv::from_environment();
  ASSERT_EQ(env.world_size, 2);
  const int rank = env.rank;
  std::unique_ptr<ProcessGroup> group;
  try {
    group = ProcessGroup::create(env, nccl ? device : torch::Device(torch::kCPU), std::chrono::seconds(60));
  } catch (const std::exception& e) {
    write_file_atomic(out / fmt::format("rank{}.refused", rank), e.what());
    std::fflush(nullptr);
    std::_Exit(kRefused);
  }
  const auto on = torch::TensorOptions().device(device);
  // Sum and broadcast of CUDA tensors.
  auto t = torch::full({1000}, static_cast<float>(rank + 1), on);
  group->allreduce_sum_(t);
  EXPECT_EQ(t.device(), device);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, 3.0f))) << "all-reduce sum";
  auto b = torch::full({7}, static_cast<float>(10 * rank + 5), on);
  group->broadcast_(b);
  EXPECT_TRUE(torch::equal(b.cpu(), torch::full({7}, 5.0f))) << "broadcast from rank 0";
  EXPECT_TRUE(group->any_rank(rank == 1));
  // A model's gradients averaged: each rank sees half of the batch; both can compute both halves.
  torch::manual_seed(0);
  auto net = torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::ReLU(), torch::nn::Linear(32, 4));
  net->to(device);
  group->broadcast_module(*net);
  const auto x = torch::randn({8, 16}).to(device), y = torch::randn({8, 4}).to(device);
  auto grads_of = [&](int r) {
    net->zero_grad();
    torch::mse_loss(net->forward(x.narrow(0, 4 * r, 4)), y.narrow(0, 4 * r, 4)).backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto g0 = grads_of(0), g1 = grads_of(1);
  auto expect_mean = [&](const char* what) {
    const auto params = net->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].grad().device(), device) << what;
      EXPECT_TRUE(torch::allclose(params[i].grad(), (g0[i] + g1[i]) / 2, 1e-5, 1e-6)) << what << ": parameter " << i;
    }
  };
  grads_of(rank);
  group->allreduce_gradients(net->parameters());
  expect_mean("allreduce_gradients");
  if (nccl) {  // the overlapped reducer keeps its buckets on the group's device: NCCL's GPU
    OverlappedGradientReducer reducer(*group, net->parameters(), /*bucket_bytes=*/1024, /*first_bucket_bytes=*/256);
    EXPECT_GT(reducer.num_buckets(), 1u);
    net->zero_grad();
    reducer.arm();
    torch::mse_loss(net->forward(x.narrow(0, 4 * rank, 4)), y.narrow(0, 4 * rank, 4)).backward();
    reducer.finish();
    expect_mean("overlapped reducer");
  }
  group->barrier();
  gpu_test::sync(device);
  write_file_atomic(out / fmt::format("rank{}.ok", rank), backend);
}

// This executable, once per rank, with the rank's variables; returns the exit codes (killed after
// `deadline_s`).
std::vector<int> start_ranks(const std::string& backend, const fs::path& dir, double deadline_s) {
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const int port = pick_free_port();
  std::vector<pid_t> pids;
  std::fflush(nullptr);
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (const auto& kv : {fmt::format("RANK={}", rank), fmt::format("LOCAL_RANK={}", 0), std::string("WORLD_SIZE=2"),
                           std::string("LOCAL_WORLD_SIZE=1"), std::string("MASTER_ADDR=127.0.0.1"),
                           fmt::format("MASTER_PORT={}", port), "FACET_GPU_RANK_BACKEND=" + backend,
                           "FACET_GPU_RANK_OUT=" + dir.string()})
      env.push_back(kv);
    std::vector<std::string> args = {self, "--gtest_filter=GpuTwoRanks.RankBody"};
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string log = (dir / fmt::format("{}_rank{}.log", backend, rank)).string();
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execve(self.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes(2, -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(deadline_s);
  for (int done = 0; done < 2;) {
    for (int rank = 0; rank < 2; ++rank) {
      int status = 0;
      if (codes[rank] == -1 && ::waitpid(pids[rank], &status, WNOHANG) == pids[rank]) {
        codes[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ++done;
      }
    }
    if (std::chrono::steady_clock::now() > deadline)
      for (int rank = 0; rank < 2; ++rank)
        if (codes[rank] == -1) ::kill(pids[rank], SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return codes;
}

std::string logs(const fs::path& dir, const std::string& backend) {
  std::string all;
  for (int rank = 0; rank < 2; ++rank) {
    const fs::path p = dir / fmt::format("{}_rank{}.log", backend, rank);
    if (!fs::exists(p)) continue;
    std::string text = read_file(p);
    if (text.size() > 3000) text = "..." + text.substr(text.size() - 3000);
    all += fmt::format("--- {} rank {} ---\n{}\n", backend, rank, text);
  }
  return all;
}

TEST(GpuTwoRanks, CollectivesOnOneGpu) {
  FACET_GPU_DEVICE(device);
  const fs::path dir = test_support::scratch_dir("facet_gpu", "two_ranks");
  std::string used, note;
  if (device.is_cuda()) {
    const auto codes = start_ranks("nccl", dir, 90);
    if (codes == std::vector<int>{0, 0}) {
      used = "nccl";
    } else if (codes[0] == kRefused || codes[1] == kRefused) {
      std::string why = fs::exists(dir / "rank0.refused") ? read_file(dir / "rank0.refused") : read_file(dir / "rank1.refused");
      if (auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
      note = "NCCL refused two ranks on one GPU (" + why + ")";
      std::printf("%s: Gloo over CUDA tensors instead\n", note.c_str());
    } else {
      FAIL() << "NCCL ranks exited with " << codes[0] << ", " << codes[1] << "\n" << logs(dir, "nccl");
    }
  } else {
    note = "rehearsal on the CPU: no NCCL";
  }
  if (used.empty()) {
    const auto codes = start_ranks("gloo", dir, 90);
    ASSERT_EQ(codes, (std::vector<int>{0, 0})) << logs(dir, "gloo");
    used = "gloo over CUDA tensors";
  }
  EXPECT_EQ(read_file(dir / "rank0.ok"), used == "nccl" ? "nccl" : "gloo");
  EXPECT_EQ(read_file(dir / "rank1.ok"), used == "nccl" ? "nccl" : "gloo");
  std::printf("two ranks on %s: %s%s\n", device.str().c_str(), used.c_str(), note.empty() ? "" : ("; " + note).c_str());
  if (const char* out = std::getenv("FACET_GPU_CHECK_OUT"))
    write_file_atomic(fs::path(out) / "two_ranks.txt", used + (note.empty() ? "" : "; " + note) + "\n");
}

}  // namespace
}  // namespace facet::train::test_two_ranks
