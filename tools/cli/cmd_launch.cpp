// `facet launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] -- COMMAND...`
// starts N local ranks of `facet COMMAND...` with torchrun's environment, forwards SIGINT/SIGTERM,
// and if one rank fails stops the others and exits with its code. Also the hidden `_dist_selftest`
// command the tests use to exercise rendezvous, collectives and dead-rank detection.
#include "core/error.h"
#include "core/log.h"
#include "tools/cli/commands.h"
#include "train/distributed.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <map>
#include <thread>

namespace facet::cli {

namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void remember_signal(int s) { g_forward_signal.store(s); }

struct LaunchArgs {
  int nproc_per_node = 1, nnodes = 1, node_rank = 0, master_port = 29500;
  std::string master_addr = "127.0.0.1";
  double grace_s = 10;
  std::vector<std::string> command;
};

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

std::string describe(int status) {
  return WIFEXITED(status) ? fmt::format("exited with code {}", WEXITSTATUS(status))
                           : fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
}

int launch(const LaunchArgs& a) {
  if (a.command.empty()) fail("facet launch: give the command to run after --, e.g. -- train CONFIG");
  if (a.nproc_per_node < 1 || a.nnodes < 1 || a.node_rank < 0 || a.node_rank >= a.nnodes)
    fail("facet launch: need --nproc-per-node >= 1, --nnodes >= 1 and 0 <= --node-rank < --nnodes");
  if (a.master_port < 0 || a.master_port > 65535) fail("facet launch: --master-port {} is not a port", a.master_port);
  if (a.master_port == 0 && a.nnodes > 1)
    fail("facet launch: --master-port 0 (pick a free port) works on one node only; give every node the same port");
  const int master_port = a.master_port == 0 ? train::pick_free_port() : a.master_port;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) fail("facet launch: cannot find the facet executable (/proc/self/exe)");
  const std::string exe(self, static_cast<size_t>(n));
  const int world = a.nproc_per_node * a.nnodes;
  // One run directory stamp for every rank of this node.
  const std::string stamp = std::getenv("FACET_RUN_STAMP") ? std::getenv("FACET_RUN_STAMP")
                                                           : fmt::format("{}-{}", std::time(nullptr), ::getpid());
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // Signals stay blocked while forking: one arriving before a child has reset its handlers would
  // otherwise be swallowed by the child's copy of remember_signal.
  sigset_t stop_signals, previous;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, &previous);
  const pid_t launcher = ::getpid();

  std::map<pid_t, int> children;  // pid → local rank
  for (int local = 0; local < a.nproc_per_node; ++local) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (const auto& [child, rank] : children) ::kill(child, SIGKILL);
      fail("facet launch: fork failed");
    }
    if (pid == 0) {
      // If the launcher itself is killed (SIGKILL, OOM), the ranks must not live on as orphans.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(128 + SIGTERM);
      const int rank = a.node_rank * a.nproc_per_node + local;
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(a.nproc_per_node).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(a.node_rank).c_str(), 1);
      setenv("MASTER_ADDR", a.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(master_port).c_str(), 1);
      setenv("FACET_RUN_STAMP", stamp.c_str(), 1);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      sigprocmask(SIG_SETMASK, &previous, nullptr);
      std::vector<std::string> args = {exe};
      args.insert(args.end(), a.command.begin(), a.command.end());
      std::vector<char*> argv;
      for (auto& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
    children.emplace(pid, local);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  log::info("launched {} rank(s) on node {} of {} (world size {}, master {}:{})", a.nproc_per_node, a.node_rank,
            a.nnodes, world, a.master_addr, master_port);

  int result = 0;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  auto stop_all = [&](int signal) {
    for (const auto& [pid, local] : children) ::kill(pid, signal);
  };
  while (!children.empty()) {
    if (const int s = g_forward_signal.exchange(0)) {
      stop_all(s);  // the ranks checkpoint and exit on SIGINT/SIGTERM
      if (!stopping) stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      stopping = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0 && children.count(pid)) {
      const int local = children.at(pid);
      children.erase(pid);
      const int code = exit_code_of(status);
      if (code != 0 && result == 0) {
        result = code;
        if (!stopping) {
          log::error("local rank {} {}; stopping the other ranks", local, describe(status));
          stop_all(SIGTERM);
          stopping = true;
          stop_deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(a.grace_s * 1000));
        }
      }
      continue;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      stop_all(SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return result;
}

// Rendezvous, broadcast and all-reduce checks; `die_rank` kills itself before the all-reduce and
// `stall_rank` sleeps instead, so the others must detect it within `timeout_s`; `exit_rank` finishes
// the checks and then exits with `exit_code` (the launcher must pass that code on).
int dist_selftest(int die_rank, int stall_rank, double timeout_s, int exit_rank, int exit_code) {
  const auto env = train::DistributedEnv::from_environment();
  log::set_rank(env.rank, env.world_size, true);
  auto group = train::ProcessGroup::create(env, torch::kCPU,
                                           std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  auto t = torch::full({3}, static_cast<float>(env.rank + 1));
  if (env.rank == die_rank) std::raise(SIGKILL);
  if (env.rank == stall_rank) std::this_thread::sleep_for(std::chrono::hours(1));
  group->allreduce_sum_(t);
  const float want = static_cast<float>(env.world_size * (env.world_size + 1) / 2);
  if (!torch::allclose(t, torch::full({3}, want))) fail("all-reduce gave {} instead of {}", t[0].item<float>(), want);
  auto b = torch::full({2}, static_cast<float>(env.rank));
  group->broadcast_(b, 0);
  if (b[0].item<float>() != 0.0f) fail("broadcast from rank 0 gave {}", b[0].item<float>());
  log::info("rank {} of {}: collectives ok", env.rank, env.world_size);
  return env.rank == exit_rank ? exit_code : 0;
}

}  // namespace

void add_launch_command(CLI::App& app) {
  auto a = std::make_shared<LaunchArgs>();
  auto* cmd = app.add_subcommand("launch", "Start N ranks of a facet command (torchrun-compatible environment)");
  cmd->add_option("--nproc-per-node", a->nproc_per_node, "Ranks on this machine (e.g. one per GPU)")->required();
  cmd->add_option("--nnodes", a->nnodes, "Machines in the run (default 1)");
  cmd->add_option("--node-rank", a->node_rank, "This machine's index, 0..nnodes-1 (default 0)");
  cmd->add_option("--master-addr", a->master_addr, "Address of node 0 (default 127.0.0.1)");
  cmd->add_option("--master-port", a->master_port, "Rendezvous port on node 0 (default 29500; 0: a free one, single node only)");
  cmd->add_option("--grace", a->grace_s, "Seconds the other ranks get to stop after one fails (default 10)");
  cmd->add_option("command", a->command, "The facet command for each rank, after --")->required();
  cmd->callback([a] {
    const int code = launch(*a);
    if (code != 0) throw CLI::RuntimeError(code);
  });

  struct SelfTest {
    int die_rank = -1, stall_rank = -1, exit_rank = -1, exit_code = 0;
    double timeout_s = 30;
  };
  auto s = std::make_shared<SelfTest>();
  auto* test = app.add_subcommand("_dist_selftest", "Internal: checks rendezvous and collectives");
  test->group("");  // hidden from --help
  test->add_option("--die-rank", s->die_rank);
  test->add_option("--stall-rank", s->stall_rank);
  test->add_option("--exit-rank", s->exit_rank);
  test->add_option("--exit-code", s->exit_code);
  test->add_option("--timeout", s->timeout_s);
  test->callback([s] {
    const int code = dist_selftest(s->die_rank, s->stall_rank, s->timeout_s, s->exit_rank, s->exit_code);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace facet::cli
