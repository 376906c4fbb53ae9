// `facet info`: what this build of Facet runs on — versions, CUDA devices, cuDNN, NCCL, threads.
#include "tools/cli/commands.h"

#include <facet_version.h>

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <H5public.h>
#include <fmt/format.h>
#include <opencv2/core/utility.hpp>
#include <torch/torch.h>
#if FACET_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <dlfcn.h>

#include <thread>

namespace facet::cli {
namespace {

// NCCL is loaded by libtorch_cuda when present; ask it directly so this works without nccl.h.
std::string nccl_version() {
  void* lib = dlopen("libnccl.so.2", RTLD_LAZY | RTLD_NOLOAD);
  if (!lib) lib = dlopen("libnccl.so.2", RTLD_LAZY);
  if (!lib) return "not found";
  using GetVersion = int (*)(int*);
  auto get = reinterpret_cast<GetVersion>(dlsym(lib, "ncclGetVersion"));
  int v = 0;
  if (!get || get(&v) != 0) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

std::string cudnn_version(const at::CUDAHooksInterface& cuda) {
  if (!cuda.hasCuDNN()) return "not available";
  const long v = cuda.versionCuDNN();  // major*10000 + minor*100 + patch since cuDNN 9
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

void print_info() {
  unsigned hdf5_major = 0, hdf5_minor = 0, hdf5_release = 0;
  H5get_libversion(&hdf5_major, &hdf5_minor, &hdf5_release);
  const auto& cuda = at::detail::getCUDAHooks();
  const bool has_cuda = torch::cuda::is_available();

  fmt::print("Facet      {} (git {})\n", FACET_VERSION, FACET_GIT_REVISION);
  fmt::print("LibTorch   {}\n", TORCH_VERSION);
  fmt::print("CUDA       {}\n", has_cuda ? fmt::format("available, {} device(s)", torch::cuda::device_count())
                                         : std::string(FACET_WITH_CUDA ? "built in, no usable device"
                                                                       : "not built in"));
#if FACET_WITH_CUDA
  for (int i = 0; has_cuda && i < static_cast<int>(torch::cuda::device_count()); ++i) {
    const auto* p = at::cuda::getDeviceProperties(i);
    fmt::print("  cuda:{}   {} ({:.1f} GiB, compute {}.{})\n", i, p->name,
               static_cast<double>(p->totalGlobalMem) / (1 << 30), p->major, p->minor);
  }
#endif
  fmt::print("cuDNN      {}\n", has_cuda ? cudnn_version(cuda) : std::string("n/a (no CUDA device)"));
  fmt::print("NCCL       {}\n", FACET_WITH_CUDA ? nccl_version() : std::string("not built in"));
  fmt::print("OpenCV     {}\n", cv::getVersionString());
  fmt::print("HDF5       {}.{}.{}\n", hdf5_major, hdf5_minor, hdf5_release);
  fmt::print("Threads    intra-op {}, inter-op {}, hardware {}\n", at::get_num_threads(),
             at::get_num_interop_threads(), std::thread::hardware_concurrency());
}

}  // namespace

void add_info_command(CLI::App& app) {
  app.add_subcommand("info", "Print Facet's version, LibTorch, CUDA devices, cuDNN, NCCL, OpenCV, HDF5 and threads")
      ->callback(print_info);
}

}  // namespace facet::cli
