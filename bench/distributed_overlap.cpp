// Data-parallel step time on CPU/Gloo: one rank alone vs two ranks with the synchronous bucketed
// all-reduce (ProcessGroup::allreduce_gradients) vs two ranks with communication overlapped with
// backward (OverlappedGradientReducer). Ranks are forked from this process, one intra-op thread each.
//   distributed_overlap [--width 1024] [--layers 4] [--batch 64] [--steps 10] [--bucket-mb 25]
#include "train/distributed.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

using facet::train::DistributedEnv;
using facet::train::OverlappedGradientReducer;
using facet::train::ProcessGroup;

struct Args {
  int64_t width = 1024, layers = 4, batch = 64, steps = 10, bucket_mb = 25;
};


// Mean milliseconds per step after one warm-up step.
double run_rank(const Args& a, const std::string& mode, int rank, int world, int port) {
  at::set_num_threads(1);
  std::unique_ptr<ProcessGroup> group;
  if (world > 1) {
    DistributedEnv env;
    env.rank = env.local_rank = rank;
    env.world_size = env.local_world_size = world;
    env.master_port = port;
    group = ProcessGroup::create(env, torch::kCPU, std::chrono::seconds(60));
  }
  torch::manual_seed(0);
  torch::nn::Sequential net;
  for (int64_t l = 0; l < a.layers; ++l) {
    net->push_back(torch::nn::Linear(a.width, a.width));
    net->push_back(torch::nn::ReLU());
  }
  net->push_back(torch::nn::Linear(a.width, 1));
  if (group) group->broadcast_module(*net);
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(1e-3));
  std::unique_ptr<OverlappedGradientReducer> reducer;
  if (mode == "overlap") reducer = std::make_unique<OverlappedGradientReducer>(*group, net->parameters(), a.bucket_mb << 20);
  const auto x = torch::randn({a.batch, a.width});
  const auto y = torch::randn({a.batch, 1});
  std::chrono::steady_clock::time_point start;
  for (int64_t step = 0; step <= a.steps; ++step) {
    if (step == 1) start = std::chrono::steady_clock::now();
    sgd.zero_grad();
    if (reducer) reducer->arm();
    torch::mse_loss(net->forward(x), y).backward();
    if (reducer) reducer->finish();
    else if (group) group->allreduce_gradients(net->parameters(), a.bucket_mb << 20);
    sgd.step();
  }
  if (group) group->barrier();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / a.steps;
}

double run(const Args& a, const std::string& mode, int world) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const int port = facet::train::pick_free_port();
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        const double ms = run_rank(a, mode, rank, world, port);
        if (rank == 0 && ::write(fds[1], &ms, sizeof(ms)) != sizeof(ms)) code = 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        code = 1;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  ::close(fds[1]);
  double ms = -1;
  if (::read(fds[0], &ms, sizeof(ms)) != sizeof(ms)) ms = -1;
  ::close(fds[0]);
  for (const pid_t pid : pids) ::waitpid(pid, nullptr, 0);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--width") a.width = v;
    else if (k == "--layers") a.layers = v;
    else if (k == "--batch") a.batch = v;
    else if (k == "--steps") a.steps = v;
    else if (k == "--bucket-mb") a.bucket_mb = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const double params = static_cast<double>(a.layers * (a.width * a.width + a.width) + a.width + 1);
  std::printf("MLP %lld x %lld (%.1f M parameters, %.0f MB of fp32 gradients), batch %lld per rank, %lld steps, "
              "Gloo on loopback, 1 thread per rank, %ld CPU(s)\n",
              static_cast<long long>(a.layers), static_cast<long long>(a.width), params / 1e6, params * 4 / 1e6,
              static_cast<long long>(a.batch), static_cast<long long>(a.steps), sysconf(_SC_NPROCESSORS_ONLN));
  const double one = run(a, "one", 1);
  const double sync = run(a, "sync", 2);
  const double overlap = run(a, "overlap", 2);
  std::printf("%-34s %8.1f ms/step\n", "1 rank (no communication)", one);
  std::printf("%-34s %8.1f ms/step\n", "2 ranks, all-reduce after backward", sync);
  std::printf("%-34s %8.1f ms/step\n", "2 ranks, overlapped with backward", overlap);
  return one < 0 || sync < 0 || overlap < 0 ? 1 : 0;
}
