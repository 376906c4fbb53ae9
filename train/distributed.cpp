#include "train/distributed.h"

#include "core/error.h"
#include "core/log.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>

namespace facet::train {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int parse_int(std::string_view text, const char* variable, std::string_view whole) {
  int out = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || out < 0)
    fail("environment: {}={}: expected a non-negative integer", variable, whole);
  return out;
}

int env_int(const char* name, int fallback) {
  const auto v = env(name);
  return v ? parse_int(*v, name, *v) : fallback;
}

}  // namespace

int pick_free_port() {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  const int low = 10000, high = std::max(low + 1000, ephemeral_low);  // [low, high)
  std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = low + static_cast<int>(rng() % static_cast<unsigned>(high - low));
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && ::listen(fd, 1) == 0;
    ::close(fd);
    if (ok) return port;
  }
  fail("no free TCP port found between {} and {}", low, high);
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets; inside each bracket group the first number
  // of the first range is the first host ("n[003-005,9]" → "n003", keeping the zero padding).
  std::string host;
  for (size_t i = 0; i < nodelist.size(); ++i) {
    const char c = nodelist[i];
    if (c == ',') break;
    if (c != '[') {
      host += c;
      continue;
    }
    const size_t close = nodelist.find(']', i);
    if (close == std::string::npos) fail("environment: SLURM_NODELIST={}: unbalanced '['", nodelist);
    const std::string inner = nodelist.substr(i + 1, close - i - 1);
    const std::string first = inner.substr(0, inner.find_first_of(",-"));
    if (first.empty()) fail("environment: SLURM_NODELIST={}: empty range", nodelist);
    host += first;
    i = close;
  }
  if (host.empty()) fail("environment: SLURM_NODELIST={}: no host", nodelist);
  return host;
}

int slurm_tasks_on_node(const std::string& value, int node_id, const char* variable) {
  // "2(x3),1": nodes 0-2 run 2 tasks, node 3 runs 1.
  int node = 0;
  size_t start = 0;
  while (start <= value.size()) {
    const size_t comma = std::min(value.find(',', start), value.size());
    const std::string_view item(value.data() + start, comma - start);
    int count = 0, repeat = 1;
    if (const size_t paren = item.find("(x"); paren != std::string_view::npos) {
      if (item.back() != ')') fail("environment: {}={}: expected COUNT or COUNT(xREPEAT)", variable, value);
      count = parse_int(item.substr(0, paren), variable, value);
      repeat = parse_int(item.substr(paren + 2, item.size() - paren - 3), variable, value);
    } else {
      count = parse_int(item, variable, value);
    }
    if (count < 1 || repeat < 1) fail("environment: {}={}: task counts must be positive", variable, value);
    if (node_id < node + repeat) return count;
    node += repeat;
    start = comma + 1;
  }
  fail("environment: {}={} describes {} node(s), but this is node {} (SLURM_NODEID)", variable, value, node,
       node_id);
}

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  if (env("RANK") || env("WORLD_SIZE")) {
    e.source = "torchrun";
    if (!env("RANK") || !env("WORLD_SIZE")) fail("environment: RANK and WORLD_SIZE must be set together");
    e.rank = env_int("RANK", 0);
    e.world_size = env_int("WORLD_SIZE", 1);
    e.local_rank = env_int("LOCAL_RANK", e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
    e.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
    e.master_port = env_int("MASTER_PORT", 29500);
  } else if (env("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) {
    e.source = "slurm";
    e.rank = env_int("SLURM_PROCID", 0);
    e.world_size = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    const int node = env_int("SLURM_NODEID", 0);
    if (auto v = env("SLURM_NTASKS_PER_NODE")) e.local_world_size = slurm_tasks_on_node(*v, node, "SLURM_NTASKS_PER_NODE");
    else if (auto t = env("SLURM_TASKS_PER_NODE")) e.local_world_size = slurm_tasks_on_node(*t, node, "SLURM_TASKS_PER_NODE");
    else e.local_world_size = 1;
    if (auto addr = env("MASTER_ADDR")) e.master_addr = *addr;
    else if (auto ip = env("SLURM_LAUNCH_NODE_IPADDR")) e.master_addr = *ip;
    else if (auto nodes = env("SLURM_NODELIST")) e.master_addr = first_slurm_host(*nodes);
    else if (auto job_nodes = env("SLURM_JOB_NODELIST")) e.master_addr = first_slurm_host(*job_nodes);
    e.master_port = env_int("MASTER_PORT", 29500);
  }
  if (e.world_size < 1) fail("environment: WORLD_SIZE must be at least 1");
  if (e.rank >= e.world_size) fail("environment: RANK={} is not below WORLD_SIZE={}", e.rank, e.world_size);
  if (e.local_world_size < 1 || e.local_rank >= e.local_world_size)
    fail("environment: LOCAL_RANK={} is not below LOCAL_WORLD_SIZE={}", e.local_rank, e.local_world_size);
  if (e.master_port <= 0 || e.master_port > 65535) fail("environment: MASTER_PORT={} is not a port", e.master_port);
  return e;
}

// --- buckets ---------------------------------------------------------------------------------------

// Consecutive tensors (in `order`) of one dtype, flattened into one buffer whose tail holds one
// "this rank had a gradient" flag per member: after the sum, a zero flag means no rank had one.
// (Outside the anonymous namespace: OverlappedGradientReducer::State, declared in the header, holds them.)
struct GradientBucket {
  std::vector<size_t> members;
  std::vector<int64_t> offsets;
  int64_t numel = 0;
  torch::ScalarType dtype = torch::kFloat;
  int64_t size() const { return numel + static_cast<int64_t>(members.size()); }
};

namespace {

std::vector<GradientBucket> plan_buckets(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& order,
                                 int64_t cap_bytes, int64_t first_cap_bytes) {
  std::vector<GradientBucket> buckets;
  int64_t bytes = 0;
  for (const size_t i : order) {
    const auto& t = tensors[i];
    const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    const int64_t cap = buckets.size() == 1 ? first_cap_bytes : cap_bytes;  // filling the first bucket
    if (buckets.empty() || buckets.back().dtype != t.scalar_type() ||
        (!buckets.back().members.empty() && bytes + b > cap)) {
      buckets.emplace_back();
      buckets.back().dtype = t.scalar_type();
      bytes = 0;
    }
    auto& bucket = buckets.back();
    bucket.members.push_back(i);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += t.numel();
    bytes += b;
  }
  return buckets;
}

// Half-precision sums can overflow: divide before the all-reduce there (as DDP does), after it otherwise
// so that two ranks give exactly (a + b) / 2.
bool divide_first(torch::ScalarType t) { return t == torch::kHalf || t == torch::kBFloat16; }

const torch::Tensor& gradient_of(const torch::Tensor& p) {
  const auto& g = p.grad();
  if (g.defined() && g.is_sparse()) fail("distributed: sparse gradients are not supported");
  return g;
}

// The flags at the end of a bucket: after the all-reduce, > 0 where some rank had a gradient.
torch::Tensor flags_of(const GradientBucket& b, const torch::Tensor& flat) {
  return flat.narrow(0, b.numel, static_cast<int64_t>(b.members.size()));
}

// Writes the summed bucket back: averaged gradients for every parameter some rank had one for
// (`used`: the bucket's flags, on the CPU as float).
void unpack(const std::vector<torch::Tensor>& params, const GradientBucket& b, const torch::Tensor& flat, int world,
            const torch::Tensor& used) {
  if (!divide_first(b.dtype)) flat.narrow(0, 0, b.numel).div_(world);
  const auto flags = used.accessor<float, 1>();
  for (size_t k = 0; k < b.members.size(); ++k) {
    if (flags[static_cast<int64_t>(k)] <= 0) continue;  // no rank had a gradient: leave it undefined
    const auto& p = params[b.members[k]];
    const auto part = flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
    if (p.grad().defined()) p.mutable_grad().copy_(part);
    else p.mutable_grad() = part.to(p.device()).clone();
  }
}

std::vector<size_t> iota(size_t n, bool reverse) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = reverse ? n - 1 - i : i;
  return order;
}

}  // namespace

// --- the process group -----------------------------------------------------------------------------

std::unique_ptr<ProcessGroup> ProcessGroup::create(const DistributedEnv& e, torch::Device device,
                                                   std::chrono::milliseconds timeout) {
  std::unique_ptr<ProcessGroup> g(new ProcessGroup());
  g->rank_ = e.rank;
  g->world_size_ = e.world_size;
  g->timeout_ = timeout;
  if (device.is_cuda() && !device.has_index()) device = torch::Device(torch::kCUDA, e.local_rank);
  g->device_ = device;
  if (!device.is_cpu() && !device.is_cuda()) fail("distributed: no backend for device {}", device.str());

  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(e.master_port);
  options.isServer = e.rank == 0;
  options.numWorkers = e.world_size;
  options.waitWorkers = true;
  options.timeout = timeout;  // the default is 300 s
  try {
    g->store_ = c10::make_intrusive<c10d::TCPStore>(e.master_addr, options);
  } catch (const std::exception& err) {
    std::string message = err.what();
    if (auto newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
    fail("rank {} of {}: rendezvous at {}:{} ({} environment) did not complete within {} s; are all ranks "
         "started and is the port free? ({})",
         e.rank, e.world_size, e.master_addr, e.master_port, e.source, timeout.count() / 1000.0, message);
  }
  if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
    if (device.index() >= static_cast<int>(c10::cuda::device_count()))
      fail("rank {}: {} does not exist ({} GPU(s) visible; LOCAL_RANK={})", e.rank, device.str(),
           c10::cuda::device_count(), e.local_rank);
    // Before the first collective, or every rank's communicator lands on GPU 0.
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device.index()));
    // Blocking wait makes work->wait() throw on the calling thread on a timeout or a NCCL error,
    // instead of the watchdog tearing the process down. A user's own setting wins.
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = timeout;
    try {
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store_, e.rank, e.world_size, o);
      // Communicators are lazy; connect now so that a failure shows here, not in the first step.
      nccl->eagerConnectSingleDevice(device);
      g->backend_ = nccl;
    } catch (const std::exception& err) {
      fail("rank {}: connecting the NCCL process group on {} failed: {}", e.rank, device.str(), err.what());
    }
#else
    fail("distributed training on CUDA needs NCCL, and this build of Facet has none (nccl.h was not found at "
         "configure time; see cmake/FacetTorch.cmake)");
#endif
  } else {
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);  // the default is 30 min
    const auto iface = env("GLOO_SOCKET_IFNAME");
    const bool loopback = e.master_addr == "127.0.0.1" || e.master_addr == "localhost";
    try {
      // The default device resolves this host's name, which fails in many containers; a single-host
      // run can always use loopback.
      o->devices.push_back(iface      ? c10d::ProcessGroupGloo::createDeviceForInterface(*iface)
                           : loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                      : c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 2;  // newer releases no longer default it
      g->backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store_, e.rank, e.world_size, o);
    } catch (const std::exception& err) {
      fail("rank {}: connecting the Gloo process group failed (set GLOO_SOCKET_IFNAME to pick the network "
           "interface): {}",
           e.rank, err.what());
    }
  }
  return g;
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    work->wait(timeout_);
  } catch (const std::exception& err) {
    std::string message = err.what();
    if (auto newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
    fail("rank {} of {}: {} failed or timed out (limit {} s): another rank probably died or stalled; see its "
         "log. ({})",
         rank_, world_size_, what, timeout_.count() / 1000.0, message);
  }
}

torch::Tensor ProcessGroup::staged(const torch::Tensor& t) const {
  return t.device() == device_ ? t.contiguous() : t.to(device_).contiguous();
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::allreduce_async(torch::Tensor& flat) {
  std::vector<at::Tensor> tensors{flat};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  o.timeout = timeout_;
  return backend_->allreduce(tensors, o);
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
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p);
  for (auto& b : module.buffers())
    if (b.defined()) tensors.push_back(b);
  for (const auto& bucket : plan_buckets(tensors, iota(tensors.size(), false), 25 << 20, 25 << 20)) {
    std::vector<torch::Tensor> parts;
    for (const size_t m : bucket.members) parts.push_back(tensors[m].reshape({-1}).to(device_));
    auto flat = torch::cat(parts);
    broadcast_(flat, 0);
    for (size_t k = 0; k < bucket.members.size(); ++k) {
      auto& t = tensors[bucket.members[k]];
      t.copy_(flat.narrow(0, bucket.offsets[k], t.numel()).view(t.sizes()));
    }
  }
}

void ProcessGroup::allreduce_sum_(torch::Tensor& tensor) {
  auto flat = staged(tensor);
  wait(allreduce_async(flat), "all-reduce");
  if (!flat.is_same(tensor)) tensor.copy_(flat);
}

void ProcessGroup::allreduce_mean_(torch::Tensor& tensor) {
  allreduce_sum_(tensor);
  tensor.div_(world_size_);
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

torch::Tensor ProcessGroup::allgather_varying(const torch::Tensor& tensor) {
  const torch::Tensor sizes = allgather(torch::tensor({tensor.size(0)}, torch::kLong)).to(torch::kCPU).reshape({-1});
  const int64_t longest = sizes.max().item<int64_t>();
  std::vector<int64_t> padded_shape = tensor.sizes().vec();
  padded_shape[0] = longest;
  torch::Tensor padded = torch::zeros(padded_shape, tensor.options());
  padded.narrow(0, 0, tensor.size(0)).copy_(tensor);
  const torch::Tensor all = allgather(padded);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_size_; ++r) parts.push_back(all[r].narrow(0, 0, sizes[r].item<int64_t>()));
  return torch::cat(parts);
}

std::vector<std::string> ProcessGroup::allgather_bytes(const std::string& bytes) {
  const torch::Tensor own = torch::from_blob(const_cast<char*>(bytes.data()), {static_cast<int64_t>(bytes.size())},
                                             torch::kUInt8).clone();
  const torch::Tensor sizes = allgather(torch::tensor({own.size(0)}, torch::kLong)).to(torch::kCPU).reshape({-1});
  const torch::Tensor all = allgather_varying(own).to(torch::kCPU).contiguous();
  std::vector<std::string> out;
  int64_t offset = 0;
  for (int r = 0; r < world_size_; ++r) {
    const int64_t n = sizes[r].item<int64_t>();
    out.emplace_back(reinterpret_cast<const char*>(all.data_ptr<uint8_t>()) + offset, static_cast<size_t>(n));
    offset += n;
  }
  return out;
}

void ProcessGroup::allreduce_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  for (const auto& b : plan_buckets(params, iota(params.size(), false), bucket_bytes, bucket_bytes)) {
    auto flat = torch::zeros({b.size()}, torch::TensorOptions().dtype(b.dtype).device(device_));
    std::vector<float> used(b.members.size(), 0.0f);
    for (size_t k = 0; k < b.members.size(); ++k) {
      const auto& g = gradient_of(params[b.members[k]]);
      if (!g.defined()) continue;
      flat.narrow(0, b.offsets[k], g.numel()).copy_(g.reshape({-1}));
      used[k] = 1;
    }
    flat.narrow(0, b.numel, static_cast<int64_t>(used.size()))
        .copy_(torch::from_blob(used.data(), {static_cast<int64_t>(used.size())}, torch::kFloat));
    if (divide_first(b.dtype)) flat.div_(world_size_);
    wait(allreduce_async(flat), "gradient all-reduce");
    unpack(params, b, flat, world_size_, flags_of(b, flat).to(torch::kCPU, torch::kFloat));
  }
}

void ProcessGroup::barrier() {
  c10d::BarrierOptions o;
  o.timeout = timeout_;
  wait(backend_->barrier(o), "barrier");
}

// --- overlapped reducer ----------------------------------------------------------------------------

struct OverlappedGradientReducer::State {
  ProcessGroup* group = nullptr;
  std::vector<torch::Tensor> params;
  std::vector<GradientBucket> buckets;
  // Per bucket, reused every step: the gradients, then a flag per member set where it has one
  // (on the device, so that no host copy stalls backward on a GPU).
  std::vector<torch::Tensor> flats;
  std::vector<int64_t> pending;              // gradients still to arrive, per bucket
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::vector<std::pair<size_t, size_t>> where;  // parameter → (bucket, member)
  std::vector<char> arrived;
  size_t next_launch = 0;
  bool armed = false;
  std::mutex mutex;  // hooks may run on autograd's device threads

  void launch(size_t b) {
    auto& flat = flats[b];
    if (divide_first(buckets[b].dtype)) flat.div_(group->world_size());
    works[b] = group->allreduce_async(flat);
  }

  void on_gradient(size_t index) {
    std::lock_guard lock(mutex);
    if (!armed) return;
    if (arrived[index])
      fail("distributed: parameter {} received two gradients in one synced backward; call arm() before "
           "each backward whose gradients should be averaged",
           index);
    arrived[index] = 1;
    const auto [b, k] = where[index];
    torch::NoGradGuard no_grad;
    const auto& g = gradient_of(params[index]);
    if (g.defined()) {
      flats[b].narrow(0, buckets[b].offsets[k], g.numel()).copy_(g.reshape({-1}));
      flats[b].narrow(0, buckets[b].numel + static_cast<int64_t>(k), 1).fill_(1);
    }
    if (--pending[b] == 0)
      while (next_launch < buckets.size() && pending[next_launch] == 0) launch(next_launch++);
  }
};

namespace {

struct ReduceHook : torch::autograd::PostAccumulateGradHook {
  ReduceHook(OverlappedGradientReducer::State* s, size_t i) : state(s), index(i) {}
  void operator()(const torch::autograd::Variable& /*param*/) override { state->on_gradient(index); }
  OverlappedGradientReducer::State* state;
  size_t index;
};

}  // namespace

OverlappedGradientReducer::OverlappedGradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params,
                                                     int64_t bucket_bytes, int64_t first_bucket_bytes)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.group = &group;
  s.params = std::move(params);
  for (size_t i = 0; i < s.params.size(); ++i) {
    const auto& p = s.params[i];
    if (!p.requires_grad() || !p.is_leaf())
      fail("distributed: parameter {} is not a leaf that requires grad; pass only trainable parameters", i);
    if (torch::autograd::impl::post_acc_grad_hooks(p))
      fail("distributed: parameter {} already has a post-accumulate-grad hook", i);
  }
  s.buckets = plan_buckets(s.params, iota(s.params.size(), true), bucket_bytes, first_bucket_bytes);
  s.where.resize(s.params.size());
  s.arrived.assign(s.params.size(), 0);
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    const auto& bucket = s.buckets[b];
    s.flats.push_back(torch::zeros({bucket.size()}, torch::TensorOptions().dtype(bucket.dtype).device(group.device())));
    s.pending.push_back(static_cast<int64_t>(bucket.members.size()));
    s.works.emplace_back();
    for (size_t k = 0; k < bucket.members.size(); ++k) s.where[bucket.members[k]] = {b, k};
  }
  for (size_t i = 0; i < s.params.size(); ++i)
    torch::autograd::impl::set_post_acc_grad_hooks(s.params[i], std::make_unique<ReduceHook>(state_.get(), i));
}

OverlappedGradientReducer::~OverlappedGradientReducer() {
  for (const auto& p : state_->params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

size_t OverlappedGradientReducer::num_buckets() const { return state_->buckets.size(); }

void OverlappedGradientReducer::arm() {
  std::lock_guard lock(state_->mutex);
  if (state_->armed) fail("distributed: arm() twice without finish()");
  state_->armed = true;
}

void OverlappedGradientReducer::finish() {
  auto& s = *state_;
  std::lock_guard lock(s.mutex);
  if (!s.armed) fail("distributed: finish() without arm()");
  torch::NoGradGuard no_grad;
  // Buckets whose gradients did not all arrive (parameters unused in this backward): zeros there.
  for (size_t b = s.next_launch; b < s.buckets.size(); ++b) {
    const auto& bucket = s.buckets[b];
    for (size_t k = 0; k < bucket.members.size(); ++k)
      if (!s.arrived[bucket.members[k]])
        s.flats[b].narrow(0, bucket.offsets[k], s.params[bucket.members[k]].numel()).zero_();
    s.pending[b] = 0;
    s.launch(b);
  }
  s.next_launch = s.buckets.size();
  std::vector<torch::Tensor> flags;
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    s.group->wait(s.works[b], fmt::format("gradient all-reduce (bucket {} of {})", b + 1, s.buckets.size()));
    s.works[b].reset();
    flags.push_back(flags_of(s.buckets[b], s.flats[b]));
  }
  const torch::Tensor used = torch::cat(flags).to(torch::kCPU, torch::kFloat);  // one copy to the host
  int64_t at = 0;
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    const auto n = static_cast<int64_t>(s.buckets[b].members.size());
    unpack(s.params, s.buckets[b], s.flats[b], s.group->world_size(), used.narrow(0, at, n));
    at += n;
    flags_of(s.buckets[b], s.flats[b]).zero_();
    s.pending[b] = static_cast<int64_t>(n);
  }
  std::fill(s.arrived.begin(), s.arrived.end(), 0);
  s.next_launch = 0;
  s.armed = false;
}

}  // namespace facet::train
