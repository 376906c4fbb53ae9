# LibTorch from the pinned PyPI `torch` wheel (tools/bootstrap.sh passes CMAKE_PREFIX_PATH), or any
# other LibTorch given with -DCMAKE_PREFIX_PATH=/path/to/libtorch.
#
# The wheel is CUDA-enabled, so its CMake config needs the CUDA toolkit at configure time (headers,
# cudart, nvrtc; no GPU). It is taken from /usr/local/cuda unless CUDAToolkit_ROOT says otherwise.
if(NOT DEFINED CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
  set(CUDAToolkit_ROOT /usr/local/cuda)
endif()
if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS "${CUDAToolkit_ROOT}/bin/nvcc")
  set(CMAKE_CUDA_COMPILER "${CUDAToolkit_ROOT}/bin/nvcc")
endif()

# We compile no CUDA code of our own: name the architectures so TorchConfig does not try-run a GPU
# probe (which needs a CUDA C++ dialect CMake 3.25 does not know for nvcc 13).
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
set(CMAKE_CUDA_STANDARD 17)

find_package(Torch REQUIRED)
message(STATUS "Facet: LibTorch ${Torch_VERSION} from ${Torch_DIR}")

# Torch's flags (the C++ ABI) go everywhere, so every dependency and the precompiled header agree.
separate_arguments(_facet_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
add_compile_options(${_facet_torch_flags})

set(FACET_WITH_CUDA OFF)
if(TARGET torch_cuda)
  set(FACET_WITH_CUDA ON)
endif()

# facet::torch — what every Facet target that uses tensors links.
add_library(facet_torch INTERFACE)
add_library(facet::torch ALIAS facet_torch)
target_link_libraries(facet_torch INTERFACE ${TORCH_LIBRARIES})
# The wheel ships fmt 12 headers in torch/include, which shadow Debian's fmt 9. Use them, header-only,
# so that headers and code agree and Debian's libfmt is never linked.
target_compile_definitions(facet_torch INTERFACE FMT_HEADER_ONLY)
# Whichever library comes first in DT_NEEDED wins symbol lookup, so two libraries go ahead of all
# others, in one --no-as-needed bracket (CMake de-duplicates repeated link options, which would
# split two brackets):
# - the system libstdc++: libtorch.so exports a statically linked copy of parts of a newer one
#   (std::filesystem, std::chrono::tzdb, ...) that crashes when called from our code (remove_all
#   jumps to a null pointer);
# - libtorch_cpu: it exports the optimised sgemm_ / dgemm_ its CPU matmuls call, and dlib (data/)
#   brings Debian's reference libblas in ahead of torch, which would then take every Linear and
#   attention matmul on the CPU (measured 15x slower for a small ViT). dlib's own calls get
#   torch's BLAS too; the Fortran BLAS ABI is the same.
target_link_options(facet_torch INTERFACE
  "LINKER:--push-state,--no-as-needed" "-lstdc++" "$<TARGET_FILE:torch_cpu>" "LINKER:--pop-state")
if(FACET_WITH_CUDA)
  # Keep libtorch_cuda in the link even though no symbol of ours references it; otherwise
  # --as-needed drops it and torch::cuda::is_available() is false at run time.
  target_link_options(facet_torch INTERFACE "LINKER:--no-as-needed")
  target_compile_definitions(facet_torch INTERFACE FACET_WITH_CUDA=1)
endif()

# c10d: TorchConfig does not export USE_DISTRIBUTED / USE_C10D_GLOO / USE_C10D_NCCL; without them
# ProcessGroupGloo.hpp and ProcessGroupNCCL.hpp compile to nothing. The wheel also ships neither the
# gloo headers nor nccl.h: gloo's come from Debian's libgloo-dev (types are only used through
# pointers, so its version need not match the gloo inside libtorch), nccl.h from the nvidia-nccl wheel.
get_filename_component(_facet_site "${Torch_DIR}/../../.." ABSOLUTE)   # .../site-packages/torch/share/cmake/Torch
find_path(FACET_GLOO_INCLUDE gloo/algorithm.h HINTS "${_facet_site}/include")
find_path(FACET_NCCL_INCLUDE nccl.h
  HINTS "${_facet_site}/../nvidia/nccl/include" "${_facet_site}/../../nvidia/nccl/include" "${CUDAToolkit_ROOT}/include")
target_compile_definitions(facet_torch INTERFACE USE_DISTRIBUTED USE_C10D_GLOO)
if(FACET_GLOO_INCLUDE)
  target_include_directories(facet_torch SYSTEM INTERFACE "${FACET_GLOO_INCLUDE}")
else()
  message(FATAL_ERROR "Facet: gloo headers not found (the torch wheel ships none). Install Debian's libgloo-dev "
                      "(tools/bootstrap.sh does) or pass -DFACET_GLOO_INCLUDE=/path/containing/gloo.")
endif()
if(FACET_WITH_CUDA)
  if(FACET_NCCL_INCLUDE)
    target_compile_definitions(facet_torch INTERFACE USE_C10D_NCCL)
    target_include_directories(facet_torch SYSTEM INTERFACE "${FACET_NCCL_INCLUDE}")
  else()
    message(WARNING "Facet: nccl.h not found; building without ProcessGroupNCCL (multi-GPU training disabled)")
  endif()
endif()
