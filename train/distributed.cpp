#include "train/distributed.h"

#include "core/error.h"
#include "core/log.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <charconv>
#include <cstdlib>

namespace facet::train {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int fallback) {
  const auto v = env(name);
  if (!v) return fallback;
  int out = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || out < 0)
    fail("environment: {}={}: expected a non-negative integer", name, *v);
  return out;
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry, up to a comma outside brackets.
  size_t depth = 0, end = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']' && depth) --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // prefix[03-05,07] → prefix03
  std::string range = first.substr(open + 1);
  range = range.substr(0, range.find_first_of(",-]"));
  return first.substr(0, open) + range;
}

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  if (env("RANK") || env("WORLD_SIZE")) {
    e.rank = env_int("RANK", 0);
    e.world_size = env_int("WORLD_SIZE", 1);
    e.local_rank = env_int("LOCAL_RANK", e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
    e.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
    e.master_port = env_int("MASTER_PORT", 29500);
  } else if (env("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) {
    e.rank = env_int("SLURM_PROCID", 0);
    e.world_size = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    // SLURM_NTASKS_PER_NODE may read "4" or "4(x2)"; the leading count is what we need.
    const auto per_node = env("SLURM_NTASKS_PER_NODE").value_or(env("SLURM_TASKS_PER_NODE").value_or("1"));
    e.local_world_size = std::max(1, std::atoi(per_node.c_str()));
    if (auto ip = env("SLURM_LAUNCH_NODE_IPADDR")) e.master_addr = *ip;
    else if (auto nodes = env("SLURM_NODELIST")) e.master_addr = first_slurm_host(*nodes);
    e.master_port = env_int("MASTER_PORT", 29500);
  }
  if (e.world_size < 1) fail("environment: WORLD_SIZE must be at least 1");
  if (e.rank >= e.world_size) fail("environment: RANK={} is not below WORLD_SIZE={}", e.rank, e.world_size);
  if (e.master_port <= 0 || e.master_port > 65535) fail("environment: MASTER_PORT={} is not a port", e.master_port);
  return e;
}

std::unique_ptr<ProcessGroup> ProcessGroup::create(const DistributedEnv& e, torch::Device device,
                                                   std::chrono::milliseconds timeout) {
  std::unique_ptr<ProcessGroup> g(new ProcessGroup());
  g->rank_ = e.rank;
  g->world_size_ = e.world_size;
  g->device_ = device;
  g->timeout_ = timeout;
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(e.master_port);
  options.isServer = e.rank == 0;
  options.numWorkers = e.world_size;
  options.waitWorkers = true;
  options.timeout = timeout;
  try {
    g->store_ = c10::make_intrusive<c10d::TCPStore>(e.master_addr, options);
  } catch (const std::exception& err) {
    fail("rank {}: rendezvous at {}:{} failed within {} s: {}", e.rank, e.master_addr, e.master_port,
         timeout.count() / 1000.0, err.what());
  }
  if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
    // Before the first collective, or every rank's communicator lands on GPU 0.
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device.index()));
    // Surface NCCL failures as exceptions on the CPU thread instead of hangs.
    setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = timeout;
    g->backend_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store_, e.rank, e.world_size, o);
#else
    fail("distributed training on CUDA needs NCCL, and this build of Facet has none (nccl.h was not found)");
#endif
  } else {
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    const auto iface = env("GLOO_SOCKET_IFNAME");
    const bool loopback = e.master_addr == "127.0.0.1" || e.master_addr == "localhost";
    o->devices.push_back(iface      ? c10d::ProcessGroupGloo::createDeviceForInterface(*iface)
                         : loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                    : c10d::ProcessGroupGloo::createDefaultDevice());
    o->threads = 2;  // newer releases no longer default it
    try {
      g->backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store_, e.rank, e.world_size, o);
    } catch (const std::exception& err) {
      fail("rank {}: connecting the Gloo process group failed: {}", e.rank, err.what());
    }
  }
  return g;
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait(timeout_);
  } catch (const std::exception& err) {
    std::string message = err.what();
    if (auto newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
    fail("rank {} of {}: {} failed or timed out (limit {} s): another rank probably died or stalled; see its log. ({})",
         rank_, world_size_, what, timeout_.count() / 1000.0, message);
  }
}

torch::Tensor ProcessGroup::staged(const torch::Tensor& t) const {
  return t.device() == device_ ? t.contiguous() : t.to(device_).contiguous();
}

void ProcessGroup::broadcast_(torch::Tensor& tensor, int root) {
  std::vector<at::Tensor> tensors{staged(tensor)};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  o.timeout = timeout_;
  wait(backend_->broadcast(tensors, o), "broadcast");
  if (!tensors[0].is_same(tensor)) tensor.copy_(tensors[0]);
}

void ProcessGroup::broadcast_module(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) broadcast_(p);
  for (auto& b : module.buffers()) broadcast_(b);
}

void ProcessGroup::allreduce_sum_(torch::Tensor& tensor) {
  std::vector<at::Tensor> tensors{staged(tensor)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  o.timeout = timeout_;
  wait(backend_->allreduce(tensors, o), "all-reduce");
  if (!tensors[0].is_same(tensor)) tensor.copy_(tensors[0]);
}

double ProcessGroup::allreduce_mean(double value) {
  auto t = torch::tensor({value}, torch::kDouble);
  allreduce_sum_(t);
  return t.item<double>() / world_size_;
}

bool ProcessGroup::any_rank(bool flag) {
  auto t = torch::tensor({flag ? 1.0f : 0.0f});
  allreduce_sum_(t);
  return t.item<float>() > 0;
}

torch::Tensor ProcessGroup::allgather(const torch::Tensor& tensor) {
  std::vector<at::Tensor> input{staged(tensor)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < world_size_; ++r) output[0].push_back(torch::empty_like(input[0]));
  c10d::AllgatherOptions o;
  o.timeout = timeout_;
  wait(backend_->allgather(output, input, o), "all-gather");
  return torch::stack(output[0]).to(tensor.device());
}

void ProcessGroup::allreduce_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  // Buckets of same-dtype gradients, in parameter order (identical on every rank).
  size_t i = 0;
  while (i < params.size()) {
    std::vector<torch::Tensor> bucket;
    int64_t bytes = 0;
    const auto dtype = params[i].scalar_type();
    while (i < params.size() && params[i].scalar_type() == dtype &&
           (bucket.empty() || bytes + params[i].numel() * params[i].element_size() <= bucket_bytes)) {
      auto& p = const_cast<torch::Tensor&>(params[i]);
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      bucket.push_back(p.grad());
      bytes += p.numel() * p.element_size();
      ++i;
    }
    std::vector<torch::Tensor> flat_parts;
    for (const auto& g : bucket) flat_parts.push_back(g.reshape({-1}));
    auto flat = staged(torch::cat(flat_parts));
    allreduce_sum_(flat);
    flat.div_(world_size_);
    int64_t offset = 0;
    for (auto& g : bucket) {
      g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

void ProcessGroup::barrier() {
  c10d::BarrierOptions o;
  o.timeout = timeout_;
  wait(backend_->barrier(o), "barrier");
}

}  // namespace facet::train
