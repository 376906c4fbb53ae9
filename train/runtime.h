// Where a run executes: this process's rank, its device, the process group that joins the ranks,
// and the run's seed. Every mode (train, evaluate, predict) starts by making one.
#pragma once

#include "core/config.h"
#include "train/distributed.h"
#include "train/options.h"

#include <torch/torch.h>

#include <memory>

namespace facet::train {

struct Runtime {
  DistributedEnv env;
  torch::Device device{torch::kCPU};
  uint64_t seed = 0;
  std::unique_ptr<ProcessGroup> group;  // null on one rank

  bool leader() const { return env.rank == 0; }
  int world_size() const { return env.world_size; }
};

// Reads the environment (torchrun / SLURM variables), picks the device (train.device), sets the
// thread count and, with `connect` and several ranks, joins the process group.
Runtime make_runtime(const Config& config, const TrainOptions& options, bool connect);

// Seeds the default generators (CPU, and the device's when it is a GPU) from (run seed, a, b, c).
// The trainer seeds every micro-batch from (step, its place in the global batch), so each random
// draw (dropout, masking, diffusion noise) depends on which samples are processed, not on the
// number of ranks or accumulation steps, and a resumed run draws exactly what it would have.
void seed_random_streams(const Runtime& runtime, uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace facet::train
