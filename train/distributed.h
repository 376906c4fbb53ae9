// Data-parallel training on PyTorch's c10d: rendezvous through a TCPStore, ProcessGroupGloo on CPU,
// ProcessGroupNCCL on CUDA. LibTorch has no C++ DistributedDataParallel, so gradients are averaged
// here in buckets (flashlight's coalescing-reducer design). Every collective has a timeout, so a
// rank that dies or stalls becomes a facet::Error on the others, never a hang.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class Store;
class Backend;
class Work;
}  // namespace c10d

namespace facet::train {

// Where this process stands in a run: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else SLURM's (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID, SLURM_NTASKS_PER_NODE, SLURM_LAUNCH_NODE_IPADDR or the first SLURM_NODELIST host).
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  static DistributedEnv from_environment();
  bool enabled() const { return world_size > 1; }
};

// The first host of a SLURM node list: "gpu[03-05,07],cpu1" → "gpu03".
std::string first_slurm_host(const std::string& nodelist);

class ProcessGroup {
 public:
  // Connects to the other ranks; rank 0 hosts the store. Gloo for CPU tensors, NCCL for CUDA.
  static std::unique_ptr<ProcessGroup> create(const DistributedEnv& env, torch::Device device,
                                              std::chrono::milliseconds timeout);
  ~ProcessGroup();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // Parameters and buffers from rank 0, in place.
  void broadcast_module(torch::nn::Module& module);
  void broadcast_(torch::Tensor& tensor, int root = 0);
  void allreduce_sum_(torch::Tensor& tensor);
  double allreduce_mean(double value);
  // True on every rank if `flag` is true on any (decisions all ranks must take together).
  bool any_rank(bool flag);
  // [world_size, ...]: `tensor` of every rank (same shape everywhere).
  torch::Tensor allgather(const torch::Tensor& tensor);
  // Averages gradients over ranks: flattened into buckets of at most `bucket_bytes`, one all-reduce
  // each. Missing gradients count as zeros so every rank issues the same collectives.
  void allreduce_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes = 25 << 20);
  void barrier();

 private:
  ProcessGroup() = default;
  // Waits for `work`, turning a timeout or a dead peer into a facet::Error naming `what`.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);
  // Tensors on the backend's device (Gloo: CPU; NCCL: the rank's GPU).
  torch::Tensor staged(const torch::Tensor& t) const;

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int rank_ = 0, world_size_ = 1;
  torch::Device device_{torch::kCPU};
  std::chrono::milliseconds timeout_{0};
};

}  // namespace facet::train
