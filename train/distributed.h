// Data-parallel training on PyTorch's c10d: rendezvous through a TCPStore, ProcessGroupGloo on CPU,
// ProcessGroupNCCL on CUDA. LibTorch has no C++ DistributedDataParallel, so gradients are averaged
// here in buckets (flashlight's coalescing-reducer design), either after backward or overlapped with
// it through post-accumulate hooks. Every collective has a timeout, so a rank that dies or stalls
// becomes a facet::Error on the others, never a hang.
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
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) take precedence; else SLURM's (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE, the master from
// SLURM_LAUNCH_NODE_IPADDR or the first host of SLURM_NODELIST; the port from MASTER_PORT).
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  // "torchrun", "slurm" or "none": for messages

  static DistributedEnv from_environment();
  bool enabled() const { return world_size > 1; }
};

// The first host of a SLURM node list: "gpu[03-05,07],cpu1" → "gpu03", "rack[1-2]-n[4-5]" → "rack1-n4".
std::string first_slurm_host(const std::string& nodelist);
// Tasks on node `node_id` from SLURM's "2(x3),1" form (3 nodes with 2 tasks, then one with 1).
// `variable` names the source in the error for a malformed value.
int slurm_tasks_on_node(const std::string& value, int node_id, const char* variable);

// A TCP port on this host that nothing listens on now, for single-node runs that need no fixed
// port (`facet launch --master-port 0`, tests). It is drawn at random below the kernel's ephemeral
// range (ip_local_port_range), where outgoing connections never take their source ports, so the
// gap between choosing it and rank 0 binding it is not a race with every client socket on the host.
int pick_free_port();

class OverlappedGradientReducer;

class ProcessGroup {
 public:
  // Connects to the other ranks; rank 0 hosts the store. Gloo for CPU tensors, NCCL for CUDA (on
  // `device`'s index, else cuda:local_rank). `timeout` bounds the rendezvous and every collective.
  static std::unique_ptr<ProcessGroup> create(const DistributedEnv& env, torch::Device device,
                                              std::chrono::milliseconds timeout);
  ~ProcessGroup();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  torch::Device device() const { return device_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Parameters and buffers from rank 0, in place (bucketed: a few collectives, not one per tensor).
  void broadcast_module(torch::nn::Module& module);
  void broadcast_(torch::Tensor& tensor, int root = 0);
  void allreduce_sum_(torch::Tensor& tensor);
  void allreduce_mean_(torch::Tensor& tensor);
  double allreduce_mean(double value);
  // True on every rank if `flag` is true on any: decisions all ranks must take together (skipping a
  // non-finite step, stopping), since a collective issued by some ranks only hangs the others.
  bool any_rank(bool flag);
  // [world_size, ...]: `tensor` of every rank, stacked in rank order (same shape everywhere).
  torch::Tensor allgather(const torch::Tensor& tensor);
  // Every rank's `tensor` concatenated along dimension 0 in rank order; the first dimension may
  // differ between ranks (per-sample values of batches of different sizes), the others may not.
  torch::Tensor allgather_varying(const torch::Tensor& tensor);
  // Every rank's bytes, in rank order (serialised metric records, prediction lines).
  std::vector<std::string> allgather_bytes(const std::string& bytes);
  // Averages gradients over ranks after backward: flattened into buckets of at most `bucket_bytes`,
  // one all-reduce each. A gradient missing on some ranks counts as zeros there (so every rank issues
  // the same collectives); one missing on every rank stays undefined, as in PyTorch's DDP.
  void allreduce_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes = 25 << 20);
  void barrier();

 private:
  friend class OverlappedGradientReducer;
  ProcessGroup() = default;
  c10::intrusive_ptr<c10d::Work> allreduce_async(torch::Tensor& flat);
  // Waits for `work`, turning a timeout or a dead peer into a facet::Error naming `what`.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);
  // Tensors on the backend's device (Gloo: CPU; NCCL: the rank's GPU).
  torch::Tensor staged(const torch::Tensor& t) const;

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int rank_ = 0, world_size_ = 1;
  torch::Device device_{torch::kCPU};
  std::chrono::milliseconds timeout_{0};
};

// Gradient averaging overlapped with backward. A post-accumulate hook on every parameter copies its
// gradient into its bucket; a bucket whose gradients are all in is all-reduced asynchronously while
// backward goes on. Buckets follow the reverse parameter order (roughly the order backward produces
// gradients; the first is small so communication starts early) and are launched strictly in that
// order, so every rank issues the same collectives whatever order autograd visits parameters in.
// Same result as ProcessGroup::allreduce_gradients. Per step:
//   reducer.arm(); loss.backward(); reducer.finish();
// Micro-batches of gradient accumulation that should not sync just skip arm()/finish().
class OverlappedGradientReducer {
 public:
  OverlappedGradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params,
                            int64_t bucket_bytes = 25 << 20, int64_t first_bucket_bytes = 1 << 20);
  ~OverlappedGradientReducer();  // removes the hooks
  OverlappedGradientReducer(const OverlappedGradientReducer&) = delete;
  OverlappedGradientReducer& operator=(const OverlappedGradientReducer&) = delete;

  void arm();
  // Launches the buckets still pending (gradients that never arrived count as zeros), waits for all
  // of them and writes the averaged gradients.
  void finish();
  size_t num_buckets() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace facet::train
