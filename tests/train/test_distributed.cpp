// Distributed training on c10d/Gloo with real processes: environment parsing; ranks forked from the
// test (broadcast, gradients of two half batches = gradient of the whole batch, SGD on 2 ranks = SGD
// on 1, synchronous and overlapped reducers); the launcher's exit codes; dead or stalled ranks
// becoming errors within the timeout; and the trainer on 2 ranks matching 1 rank.
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "tests/support/facet_process.h"
#include "tests/support/paths.h"
#include "train/distributed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>

namespace facet::train::test_distributed {
namespace {

namespace fs = std::filesystem;
using test_support::spawn_facet;
using test_support::wait_for_exit;
using ::testing::HasSubstr;



fs::path temp(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("facet_dist_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

class EnvGuard {
 public:
  explicit EnvGuard(std::map<std::string, std::string> vars) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                          "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE",
                          "SLURM_LAUNCH_NODE_IPADDR", "SLURM_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODEID",
                          "SLURM_TASKS_PER_NODE"})
      unsetenv(k);
    for (const auto& [k, v] : vars) setenv(k.c_str(), v.c_str(), 1);
    names_ = std::move(vars);
  }
  ~EnvGuard() {
    for (const auto& [k, v] : names_) unsetenv(k.c_str());
  }

 private:
  std::map<std::string, std::string> names_;
};

TEST(Distributed, TorchrunEnvironment) {
  EnvGuard g({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
              {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "1234"}});
  const auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 1234);
  EXPECT_TRUE(e.enabled());
}

TEST(Distributed, SlurmEnvironment) {
  EnvGuard g({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS_PER_NODE", "4"},
              {"SLURM_NODELIST", "gpu[03-05,07],cpu1"}});
  const auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "gpu03");
  EXPECT_EQ(first_slurm_host("node7"), "node7");
  EXPECT_EQ(first_slurm_host("a1,b2"), "a1");
  EXPECT_EQ(first_slurm_host("node[1-3],x"), "node1");
  EXPECT_EQ(first_slurm_host("n[007,009]"), "n007");
  EXPECT_EQ(first_slurm_host("rack[2-3]-gpu[10-12]"), "rack2-gpu10");
  EXPECT_THROW(first_slurm_host("node[1-3"), Error);
}

TEST(Distributed, SlurmTasksPerNodeAndMasterPrecedence) {
  EXPECT_EQ(slurm_tasks_on_node("4", 0, "X"), 4);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 2, "X"), 2);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 3, "X"), 1);
  EXPECT_THROW(slurm_tasks_on_node("2(x3),1", 4, "X"), Error);
  EnvGuard g({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "1"},
              {"SLURM_TASKS_PER_NODE", "3,1"}, {"SLURM_LAUNCH_NODE_IPADDR", "10.0.0.9"},
              {"SLURM_NODELIST", "n[1-2]"}});
  auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.local_world_size, 1);
  EXPECT_EQ(e.master_addr, "10.0.0.9");
  EXPECT_EQ(e.source, "slurm");
  // torchrun's variables win over SLURM's (facet launch inside an allocation).
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "2", 1);
  e = DistributedEnv::from_environment();
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.source, "torchrun");
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
}

TEST(Distributed, NoEnvironmentIsOneRank) {
  EnvGuard g({});
  EXPECT_FALSE(DistributedEnv::from_environment().enabled());
}

TEST(Distributed, MalformedEnvironmentNamesTheVariable) {
  EnvGuard g({{"RANK", "two"}, {"WORLD_SIZE", "4"}});
  try {
    DistributedEnv::from_environment();
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("RANK=two: expected a non-negative integer"));
  }
  EnvGuard g2({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
  EXPECT_THROW(DistributedEnv::from_environment(), Error);
  EnvGuard g3(std::map<std::string, std::string>{{"RANK", "1"}});
  EXPECT_THROW(DistributedEnv::from_environment(), Error);  // WORLD_SIZE missing
  EnvGuard g4({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "80x"}});
  EXPECT_THAT([] { DistributedEnv::from_environment(); }, ::testing::ThrowsMessage<Error>(HasSubstr("MASTER_PORT=80x")));
  EnvGuard g5({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_NTASKS_PER_NODE", "two"}});
  EXPECT_THAT([] { DistributedEnv::from_environment(); },
              ::testing::ThrowsMessage<Error>(HasSubstr("SLURM_NTASKS_PER_NODE=two")));
  EnvGuard g6({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "2(x"}});
  EXPECT_THAT([] { DistributedEnv::from_environment(); },
              ::testing::ThrowsMessage<Error>(HasSubstr("SLURM_TASKS_PER_NODE=2(x")));
  EnvGuard g7({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}});
  EXPECT_THAT([] { DistributedEnv::from_environment(); }, ::testing::ThrowsMessage<Error>(HasSubstr("SLURM_PROCID=x")));
}

// --- ranks forked from the test ---------------------------------------------------------------------

// Runs `body` in `world` forked processes, rank = index, each with a Gloo group (none when world is 1).
// A child never returns into GoogleTest: it `_exit`s, with 1 after writing its error to rank<r>.err.
// Returns each rank's exit code (128 + signal if killed); ranks still running after `deadline_s` are
// killed, so a hang fails the test instead of blocking it.
using RankBody = std::function<void(ProcessGroup* group, int rank)>;

std::vector<int> run_ranks(int world, const fs::path& dir, double timeout_s, const RankBody& body,
                           double deadline_s = 60) {
  const int port = pick_free_port();
  std::vector<pid_t> pids;
  std::fflush(nullptr);  // or the children flush the parent's pending output a second time
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        // libgomp is not fork-safe: with one thread the child never enters an OpenMP region.
        at::set_num_threads(1);
        DistributedEnv env;
        env.rank = env.local_rank = rank;
        env.world_size = env.local_world_size = world;
        env.master_port = port;
        std::unique_ptr<ProcessGroup> group;
        if (world > 1)
          group = ProcessGroup::create(env, torch::kCPU, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
        body(group.get(), rank);
      } catch (const std::exception& e) {
        write_file_atomic(dir / ("rank" + std::to_string(rank) + ".err"), e.what());
        code = 1;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes(world, -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(deadline_s);
  for (int done = 0; done < world;) {
    for (int rank = 0; rank < world; ++rank) {
      int status = 0;
      if (codes[rank] == -1 && ::waitpid(pids[rank], &status, WNOHANG) == pids[rank]) {
        codes[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ++done;
      }
    }
    if (std::chrono::steady_clock::now() > deadline)
      for (int rank = 0; rank < world; ++rank)
        if (codes[rank] == -1) ::kill(pids[rank], SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return codes;
}

std::string errors_of(const fs::path& dir, int world) {
  std::string all;
  for (int rank = 0; rank < world; ++rank)
    if (const auto p = dir / ("rank" + std::to_string(rank) + ".err"); fs::exists(p))
      all += "rank " + std::to_string(rank) + ": " + read_file(p) + "\n";
  return all;
}

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(8, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 32));
    fc3 = register_module("fc3", torch::nn::Linear(32, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::tanh(fc2(torch::tanh(fc1(x))))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
TORCH_MODULE(Mlp);

// The same global batch in every process; rank r of `world` takes its contiguous share.
std::pair<torch::Tensor, torch::Tensor> batch_share(int step, int rank, int world, int64_t global_batch) {
  torch::manual_seed(1000 + step);
  const auto x = torch::randn({global_batch, 8});
  const auto y = torch::randn({global_batch, 1});
  const int64_t n = global_batch / world;
  return {x.narrow(0, rank * n, n), y.narrow(0, rank * n, n)};
}

std::vector<torch::Tensor> detached(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

std::vector<torch::Tensor> load_tensors(const fs::path& path) {
  std::vector<torch::Tensor> out;
  torch::load(out, path.string());
  return out;
}

double max_abs_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

TEST(Distributed, BroadcastModuleCopiesParametersAndBuffersFromRankZero) {
  const fs::path dir = temp("broadcast");
  const auto codes = run_ranks(2, dir, 30, [&](ProcessGroup* group, int rank) {
    torch::manual_seed(rank);  // different random weights on each rank
    torch::nn::Sequential net(torch::nn::Linear(4, 6), torch::nn::BatchNorm1d(6), torch::nn::Linear(6, 2));
    for (auto& b : net->buffers())
      if (b.is_floating_point()) b.uniform_();  // running statistics differ too
    auto before = detached(net->parameters());
    for (auto& b : net->buffers()) before.push_back(b.clone());
    torch::save(before, (dir / ("before" + std::to_string(rank) + ".pt")).string());
    group->broadcast_module(*net);
    auto after = detached(net->parameters());
    for (auto& b : net->buffers()) after.push_back(b.clone());
    torch::save(after, (dir / ("after" + std::to_string(rank) + ".pt")).string());
  });
  ASSERT_EQ(codes, std::vector<int>({0, 0})) << errors_of(dir, 2);
  const auto before0 = load_tensors(dir / "before0.pt"), before1 = load_tensors(dir / "before1.pt");
  const auto after0 = load_tensors(dir / "after0.pt"), after1 = load_tensors(dir / "after1.pt");
  ASSERT_EQ(after0.size(), 9u);  // 6 parameters, running mean and variance, num_batches_tracked
  EXPECT_GT(max_abs_diff(before0, before1), 0.1);
  EXPECT_EQ(max_abs_diff(after0, before0), 0.0);
  EXPECT_EQ(max_abs_diff(after1, before0), 0.0);
}

// Gradients of two half batches, averaged, equal the gradient of the whole batch (mean loss); a
// parameter used by rank 1 only gets half its gradient on both ranks; one no rank used stays undefined.
TEST(Distributed, AllreduceGradientsOfHalfBatchesEqualsWholeBatch) {
  const fs::path dir = temp("gradients");
  auto body = [&](const std::string& mode) {
    return [&dir, mode](ProcessGroup* group, int rank) {
      const int world = group ? group->world_size() : 1;
      torch::manual_seed(7);
      Mlp mlp;
      auto odd = torch::ones({3}).requires_grad_();
      auto unused = torch::ones({2}).requires_grad_();
      auto params = mlp->parameters();
      params.push_back(odd);
      params.push_back(unused);
      std::unique_ptr<OverlappedGradientReducer> reducer;
      if (mode == "overlap") reducer = std::make_unique<OverlappedGradientReducer>(*group, params, 512, 128);
      const auto [x, y] = batch_share(0, rank, world, 16);
      auto loss = torch::mse_loss(mlp->forward(x), y);
      if (rank == 1) loss = loss + (odd * 2).sum();
      if (reducer) reducer->arm();
      loss.backward();
      if (reducer) reducer->finish();
      else if (group) group->allreduce_gradients(params, 512);
      std::vector<torch::Tensor> grads;
      for (const auto& p : mlp->parameters()) grads.push_back(p.grad().clone());
      if (group) {
        grads.push_back(odd.grad().defined() ? odd.grad().clone() : torch::full({3}, -1.0f));
        grads.push_back(torch::tensor({unused.grad().defined() ? 1.0f : 0.0f}));
      }
      torch::save(grads, (dir / (mode + std::to_string(rank) + ".pt")).string());
      if (reducer) std::printf("overlapped reducer: %zu buckets\n", reducer->num_buckets());
    };
  };
  ASSERT_EQ(run_ranks(1, dir, 30, body("one")), std::vector<int>({0})) << errors_of(dir, 1);
  ASSERT_EQ(run_ranks(2, dir, 30, body("sync")), std::vector<int>({0, 0})) << errors_of(dir, 2);
  ASSERT_EQ(run_ranks(2, dir, 30, body("overlap")), std::vector<int>({0, 0})) << errors_of(dir, 2);
  const auto whole = load_tensors(dir / "one0.pt");
  for (const std::string mode : {"sync", "overlap"}) {
    for (const int rank : {0, 1}) {
      auto got = load_tensors(dir / (mode + std::to_string(rank) + ".pt"));
      ASSERT_EQ(got.size(), whole.size() + 2);
      EXPECT_TRUE(torch::equal(got[whole.size()], torch::ones({3}))) << mode << ": (2 + 0) / 2 on both ranks";
      EXPECT_EQ(got[whole.size() + 1].item<float>(), 0.0f) << mode << ": unused gradient stays undefined";
      got.resize(whole.size());
      const double diff = max_abs_diff(got, whole);
      EXPECT_LT(diff, 1e-6) << mode << " rank " << rank;
      std::printf("%s rank %d: max |grad(2 ranks) - grad(1 rank)| = %.3g\n", mode.c_str(), rank, diff);
    }
  }
}

// N SGD steps (momentum) on 2 ranks with global batch B reach the weights of 1 rank with batch B.
TEST(Distributed, SgdOnTwoRanksMatchesOneRank) {
  const fs::path dir = temp("sgd");
  constexpr int kSteps = 20;
  auto body = [&](const std::string& mode) {
    return [&dir, mode](ProcessGroup* group, int rank) {
      const int world = group ? group->world_size() : 1;
      torch::manual_seed(100 + rank);  // different initial weights: broadcast_module must fix that
      Mlp mlp;
      if (group) group->broadcast_module(*mlp);
      torch::optim::SGD sgd(mlp->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
      std::unique_ptr<OverlappedGradientReducer> reducer;
      if (mode == "overlap") reducer = std::make_unique<OverlappedGradientReducer>(*group, mlp->parameters());
      double seconds = 0;
      for (int step = 0; step < kSteps; ++step) {
        const auto [x, y] = batch_share(step, rank, world, 32);
        const auto start = std::chrono::steady_clock::now();
        sgd.zero_grad();
        if (reducer) reducer->arm();
        torch::mse_loss(mlp->forward(x), y).backward();
        if (reducer) reducer->finish();
        else if (group) group->allreduce_gradients(mlp->parameters());
        sgd.step();
        if (step > 0) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      torch::save(detached(mlp->parameters()), (dir / (mode + std::to_string(rank) + ".pt")).string());
      if (rank == 0)
        write_file_atomic(dir / (mode + ".time"), std::to_string(seconds / (kSteps - 1) * 1e6));
    };
  };
  ASSERT_EQ(run_ranks(1, dir, 30, body("one")), std::vector<int>({0})) << errors_of(dir, 1);
  ASSERT_EQ(run_ranks(2, dir, 30, body("sync")), std::vector<int>({0, 0})) << errors_of(dir, 2);
  ASSERT_EQ(run_ranks(2, dir, 30, body("overlap")), std::vector<int>({0, 0})) << errors_of(dir, 2);
  const auto one = load_tensors(dir / "one0.pt");
  for (const std::string mode : {"sync", "overlap"}) {
    const auto r0 = load_tensors(dir / (mode + "0.pt")), r1 = load_tensors(dir / (mode + "1.pt"));
    EXPECT_EQ(max_abs_diff(r0, r1), 0.0) << mode << ": the ranks must hold identical weights";
    const double diff = max_abs_diff(r0, one);
    EXPECT_LT(diff, 1e-5) << mode;
    std::printf("%s: max |w(2 ranks) - w(1 rank)| = %.3g after %d steps\n", mode.c_str(), diff, kSteps);
  }
  std::printf("step of the test MLP (8-32-32-1, global batch 32): 1 rank %.0f us, 2 ranks sync %.0f us, "
              "2 ranks overlapped %.0f us\n",
              std::stod(read_file(dir / "one.time")), std::stod(read_file(dir / "sync.time")),
              std::stod(read_file(dir / "overlap.time")));
}

// A rank killed before a collective: the survivor throws facet::Error naming the collective and its
// rank, well within its 5 s timeout (Gloo sees the closed connection).
TEST(Distributed, KilledRankMakesTheSurvivorThrow) {
  const fs::path dir = temp("killed");
  const auto start = std::chrono::steady_clock::now();
  const auto codes = run_ranks(2, dir, 5, [&](ProcessGroup* group, int rank) {
    Mlp mlp;
    torch::mse_loss(mlp->forward(torch::randn({4, 8})), torch::zeros({4, 1})).backward();
    if (rank == 1) std::raise(SIGKILL);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      group->allreduce_gradients(mlp->parameters());
    } catch (const Error&) {
      write_file_atomic(dir / "detect.time",
                        std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
      throw;
    }
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(codes, std::vector<int>({1, 128 + SIGKILL}));
  const std::string message = errors_of(dir, 2);
  EXPECT_THAT(message, HasSubstr("rank 0 of 2: gradient all-reduce failed or timed out (limit 5 s)"));
  EXPECT_THAT(message, HasSubstr("another rank probably died"));
  EXPECT_LT(seconds, 10.0);
  ASSERT_TRUE(fs::exists(dir / "detect.time"));
  std::printf("dead rank detected %.2f s after the all-reduce started (whole test %.2f s, timeout 5 s)\n%s",
              std::stod(read_file(dir / "detect.time")), seconds, message.c_str());
}

TEST(Distributed, PickFreePortAvoidsTheEphemeralRange) {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  for (int i = 0; i < 20; ++i) {
    const int port = pick_free_port();
    EXPECT_GE(port, 10000);
    EXPECT_LT(port, std::max(ephemeral_low, 11000));
  }
}

TEST(Distributed, LaunchRunsCollectivesAndForwardsExitCodes) {
  const fs::path dir = temp("launch");
  // --master-port 0: the launcher picks a free port itself.
  EXPECT_EQ(wait_for_exit(spawn_facet({"launch", "--nproc-per-node", "2", "--master-port", "0", "--", "_dist_selftest"}, {},
                            dir / "ok.log")),
            0)
      << read_file(dir / "ok.log");
  EXPECT_THAT(read_file(dir / "ok.log"), HasSubstr("rank 1 of 2: collectives ok"));
  EXPECT_THAT(read_file(dir / "ok.log"), ::testing::ContainsRegex("master 127.0.0.1:[1-9][0-9]+\\)"));
  // A rank killed by a signal: the launcher stops the other and exits with 128 + SIGKILL.
  const std::string port2 = std::to_string(pick_free_port());
  EXPECT_EQ(wait_for_exit(spawn_facet({"launch", "--nproc-per-node", "2", "--master-port", port2, "--grace", "2", "--",
                             "_dist_selftest", "--die-rank", "1", "--timeout", "30"},
                            {}, dir / "die.log")),
            128 + SIGKILL)
      << read_file(dir / "die.log");
  EXPECT_THAT(read_file(dir / "die.log"), HasSubstr("local rank 1 was killed by signal 9"));
  // A rank that exits with a code of its own: the launcher exits with that code.
  EXPECT_EQ(wait_for_exit(spawn_facet({"launch", "--nproc-per-node", "2", "--master-port", std::to_string(pick_free_port()), "--",
                             "_dist_selftest", "--exit-rank", "1", "--exit-code", "3"},
                            {}, dir / "code.log")),
            3)
      << read_file(dir / "code.log");
  // SIGTERM to the launcher reaches the ranks (one stalled, one waiting in an all-reduce).
  const pid_t launcher = spawn_facet({"launch", "--nproc-per-node", "2", "--master-port", std::to_string(pick_free_port()),
                                "--", "_dist_selftest", "--stall-rank", "1", "--timeout", "60"},
                               {}, dir / "term.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto sent = std::chrono::steady_clock::now();
  ::kill(launcher, SIGTERM);
  EXPECT_EQ(wait_for_exit(launcher), 128 + SIGTERM) << read_file(dir / "term.log");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count(), 5.0);
}

// A rank that dies, or stalls, makes the other fail with a clear error well before any default timeout.
TEST(Distributed, DeadOrStalledRankIsAnErrorWithinTheTimeout) {
  for (const std::string mode : {"--die-rank", "--stall-rank"}) {
    const fs::path dir = temp("dead");
    const std::string port = std::to_string(pick_free_port());
    std::vector<pid_t> pids;
    const auto start = std::chrono::steady_clock::now();
    for (int rank = 0; rank < 2; ++rank)
      pids.push_back(spawn_facet({"_dist_selftest", mode, "1", "--timeout", "5"},
                           {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port}},
                           dir / ("rank" + std::to_string(rank) + ".log")));
    const int code0 = wait_for_exit(pids[0]);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ::kill(pids[1], SIGKILL);
    wait_for_exit(pids[1]);
    const std::string log0 = read_file(dir / "rank0.log");
    EXPECT_EQ(code0, 1) << mode << "\n" << log0;
    EXPECT_THAT(log0, HasSubstr("rank 0 of 2: all-reduce failed or timed out")) << mode;
    EXPECT_THAT(log0, HasSubstr("another rank probably died or stalled")) << mode;
    EXPECT_LT(seconds, 30.0) << mode;
    std::printf("%s: rank 0 reported the failure after %.1f s (timeout 5 s)\n", mode.c_str(), seconds);
  }
}

// Two Gloo ranks with global batch B reach the same weights as one rank with batch B, whether the
// gradient all-reduce runs after backward or overlapped with it.
TEST(Distributed, TwoRanksMatchOneRank) {
  const fs::path dir = temp("equivalence");
  const std::vector<std::string> train = {"train", test_support::source_path("experiments/demo/shapes.yaml"),
                                          "train.max_steps=12", "train.eval_every=0", "model.batch_norm=false",
                                          "model.dropout=0.0", "data.batch_size=16", "train.log_every=1000",
                                          "train.threads=1", "train.dist_timeout_s=60"};
  auto with = [&](const fs::path& run, const std::string& extra) {
    auto args = train;
    args.insert(args.end(), {extra, "--run-dir", run.string()});
    return args;
  };
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_for_exit(spawn_facet(with(dir / "one", "seed=0"), {}, dir / "one.log")), 0) << read_file(dir / "one.log");
  const double one_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto one = safetensors::load(dir / "one/checkpoints/last/model.safetensors");
  for (const std::string overlap : {"true", "false"}) {
    const fs::path run = dir / ("two_overlap_" + overlap);
    std::vector<std::string> launch = {"launch", "--nproc-per-node", "2", "--master-port",
                                       std::to_string(pick_free_port()), "--"};
    const auto two_args = with(run, "train.overlap_grad_reduce=" + overlap);
    launch.insert(launch.end(), two_args.begin(), two_args.end());
    const auto t1 = std::chrono::steady_clock::now();
    ASSERT_EQ(wait_for_exit(spawn_facet(launch, {}, run.string() + ".log")), 0) << read_file(run.string() + ".log");
    const double two_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const auto two = safetensors::load(run / "checkpoints/last/model.safetensors");
    ASSERT_EQ(one.size(), two.size());
    double worst = 0;
    for (const auto& [name, t] : one) worst = std::max(worst, (t - two.at(name)).abs().max().item<double>());
    EXPECT_LT(worst, 1e-4) << "overlap " << overlap;
    std::printf("overlap=%s: max |w1 - w2| = %.3g after 12 steps; 1 rank %.1f s, 2 ranks %.1f s (incl. start-up)\n",
                overlap.c_str(), worst, one_s, two_s);
  }
}

// With batch norm, dropout and random flips, over an epoch boundary, with plain SGD: two ranks of 8
// samples each reach the same weights as one rank accumulating two micro-batches of 8. Each
// micro-batch's random draws are seeded from its place in the global batch, so rank r and
// micro-batch r draw the same dropout masks; batch norm normalises over the same 8 samples. (The
// running statistics differ by construction: one rank updates them twice per step, each of two
// ranks once, and rank 0's are saved, so they are left out.)
TEST(Distributed, TwoRanksMatchOneRankWithAccumulation) {
  const fs::path dir = temp("accumulation");
  const std::vector<std::string> train = {"train", test_support::source_path("experiments/demo/shapes.yaml"),
                                          "train.max_steps=8", "train.eval_every=0", "model.batch_norm=true",
                                          "model.dropout=0.3", "data.augment_flip=true", "data.train_size=48",
                                          "optim.name=sgd", "optim.momentum=0.9", "optim.lr=0.05", "train.log_every=1000",
                                          "train.threads=1", "train.dist_timeout_s=60"};
  auto with = [&](const fs::path& run, std::vector<std::string> extra) {
    auto args = train;
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--run-dir", run.string()});
    return args;
  };
  ASSERT_EQ(wait_for_exit(spawn_facet(with(dir / "one", {"data.batch_size=8", "train.grad_accum=2"}), {}, dir / "one.log")), 0)
      << read_file(dir / "one.log");
  std::vector<std::string> launch = {"launch", "--nproc-per-node", "2", "--master-port", std::to_string(pick_free_port()), "--"};
  const auto two_args = with(dir / "two", {"data.batch_size=16"});
  launch.insert(launch.end(), two_args.begin(), two_args.end());
  ASSERT_EQ(wait_for_exit(spawn_facet(launch, {}, dir / "two.log")), 0) << read_file(dir / "two.log");
  const auto one = safetensors::load(dir / "one/checkpoints/last/model.safetensors");
  const auto two = safetensors::load(dir / "two/checkpoints/last/model.safetensors");
  double worst = 0;
  int compared = 0;
  for (const auto& [name, t] : one) {
    if (name.find("running_") != std::string::npos || name.find("num_batches_tracked") != std::string::npos) continue;
    worst = std::max(worst, (t - two.at(name)).abs().max().item<double>());
    ++compared;
  }
  EXPECT_GT(compared, 6);
  EXPECT_LT(worst, 1e-4);
  std::printf("max |w(1 rank, accumulation 2) - w(2 ranks)| = %.3g over %d tensors after 8 steps (3 per epoch)\n", worst,
              compared);
}

}  // namespace
}  // namespace facet::train::test_distributed
