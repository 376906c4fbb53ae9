#include "train/runtime.h"

#include "core/log.h"
#include "data/sampler.h"

#include <ATen/Context.h>

namespace facet::train {

namespace {

torch::Device choose_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, local_rank) : torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) fail("train.device: cuda requested but no CUDA device is usable");
    return torch::Device(torch::kCUDA, local_rank);
  }
  try {
    return torch::Device(name);
  } catch (const c10::Error&) {
    fail("train.device: expected auto, cpu, cuda or cuda:N, got \"{}\"", name);
  }
}

void reseed(at::Generator generator, uint64_t seed) {
  std::lock_guard lock(generator.mutex());
  generator.set_current_seed(seed);
}

}  // namespace

Runtime make_runtime(const Config& config, const TrainOptions& options, bool connect) {
  Runtime r;
  r.env = DistributedEnv::from_environment();
  log::set_rank(r.env.rank, r.env.world_size);
  r.device = choose_device(options.device, r.env.local_rank);
  if (options.threads > 0) torch::set_num_threads(options.threads);
  if (options.cudnn_benchmark) at::globalContext().setBenchmarkCuDNN(true);
  r.seed = static_cast<uint64_t>(config.get<int64_t>("seed", 0));
  if (connect && r.env.enabled()) {
    r.group = ProcessGroup::create(r.env, r.device,
                                   std::chrono::milliseconds(static_cast<int64_t>(options.dist_timeout_s * 1000)));
    log::info("distributed: rank {} of {}, device {}", r.env.rank, r.env.world_size, r.device.str());
  }
  return r;
}

void seed_random_streams(const Runtime& runtime, uint64_t a, uint64_t b, uint64_t c) {
  const uint64_t seed = data::mix_seed(data::mix_seed(runtime.seed, a, b), c);
  reseed(at::detail::getDefaultCPUGenerator(), seed);
  if (runtime.device.is_cuda()) reseed(at::globalContext().defaultGenerator(runtime.device), seed);
}

}  // namespace facet::train
