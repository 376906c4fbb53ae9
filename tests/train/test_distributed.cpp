// Distributed training on c10d/Gloo with real processes: environment parsing, 2 ranks vs 1 rank
// reaching the same weights, the launcher's exit codes, and dead or stalled ranks becoming errors.
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "train/distributed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

namespace facet::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kFacet = FACET_BINARY_DIR "/tools/cli/facet";

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Starts facet with `args` and extra environment; stderr goes to `log`.
pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen(log.c_str(), "w", stderr)) ::_exit(126);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> all = {kFacet};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : all) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(kFacet.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_code(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

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
                          "SLURM_LAUNCH_NODE_IPADDR", "SLURM_NODELIST"})
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
}

TEST(Distributed, LaunchRunsCollectivesAndForwardsExitCodes) {
  const fs::path dir = temp("launch");
  const std::string port = std::to_string(free_port());
  EXPECT_EQ(wait_code(spawn({"launch", "--nproc-per-node", "2", "--master-port", port, "--", "_dist_selftest"}, {},
                            dir / "ok.log")),
            0)
      << read_file(dir / "ok.log");
  EXPECT_THAT(read_file(dir / "ok.log"), HasSubstr("rank 1 of 2: collectives ok"));
  // A rank killed by a signal: the launcher stops the other and exits with 128 + SIGKILL.
  const std::string port2 = std::to_string(free_port());
  EXPECT_EQ(wait_code(spawn({"launch", "--nproc-per-node", "2", "--master-port", port2, "--grace", "2", "--",
                             "_dist_selftest", "--die-rank", "1", "--timeout", "30"},
                            {}, dir / "die.log")),
            128 + SIGKILL)
      << read_file(dir / "die.log");
}

// A rank that dies, or stalls, makes the other fail with a clear error well before any default timeout.
TEST(Distributed, DeadOrStalledRankIsAnErrorWithinTheTimeout) {
  for (const std::string mode : {"--die-rank", "--stall-rank"}) {
    const fs::path dir = temp("dead");
    const std::string port = std::to_string(free_port());
    std::vector<pid_t> pids;
    const auto start = std::chrono::steady_clock::now();
    for (int rank = 0; rank < 2; ++rank)
      pids.push_back(spawn({"_dist_selftest", mode, "1", "--timeout", "5"},
                           {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port}},
                           dir / ("rank" + std::to_string(rank) + ".log")));
    const int code0 = wait_code(pids[0]);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ::kill(pids[1], SIGKILL);
    wait_code(pids[1]);
    const std::string log0 = read_file(dir / "rank0.log");
    EXPECT_EQ(code0, 1) << mode << "\n" << log0;
    EXPECT_THAT(log0, HasSubstr("rank 0 of 2: all-reduce failed or timed out")) << mode;
    EXPECT_THAT(log0, HasSubstr("another rank probably died or stalled")) << mode;
    EXPECT_LT(seconds, 30.0) << mode;
    std::printf("%s: rank 0 reported the failure after %.1f s (timeout 5 s)\n", mode.c_str(), seconds);
  }
}

// Two Gloo ranks with global batch B reach the same weights as one rank with batch B.
TEST(Distributed, TwoRanksMatchOneRank) {
  const fs::path dir = temp("equivalence");
  const std::vector<std::string> train = {"train", FACET_SOURCE_DIR "/experiments/demo/shapes.yaml",
                                          "train.max_steps=12", "train.eval_every=0", "model.batch_norm=false",
                                          "model.dropout=0.0", "data.batch_size=16", "train.log_every=1000",
                                          "train.threads=1", "train.dist_timeout_s=60"};
  auto with_dir = [&](const fs::path& run) {
    auto args = train;
    args.insert(args.end(), {"--run-dir", run.string()});
    return args;
  };
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_code(spawn(with_dir(dir / "one"), {}, dir / "one.log")), 0) << read_file(dir / "one.log");
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<std::string> launch = {"launch", "--nproc-per-node", "2", "--master-port", std::to_string(free_port()), "--"};
  const auto two_args = with_dir(dir / "two");
  launch.insert(launch.end(), two_args.begin(), two_args.end());
  ASSERT_EQ(wait_code(spawn(launch, {}, dir / "two.log")), 0) << read_file(dir / "two.log");
  const auto t2 = std::chrono::steady_clock::now();
  const auto one = safetensors::load(dir / "one/checkpoints/last/model.safetensors");
  const auto two = safetensors::load(dir / "two/checkpoints/last/model.safetensors");
  ASSERT_EQ(one.size(), two.size());
  double worst = 0;
  for (const auto& [name, t] : one) worst = std::max(worst, (t - two.at(name)).abs().max().item<double>());
  EXPECT_LT(worst, 1e-4);
  std::printf("max |w1 - w2| = %.3g after 12 steps; 1 rank %.1f s, 2 ranks %.1f s (incl. start-up)\n", worst,
              std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
}

}  // namespace
}  // namespace facet::train
