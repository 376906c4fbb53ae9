#include "data/pooled_memory.h"

#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/accumulate.h>

#include <map>
#include <mutex>

namespace facet::data {
namespace {

constexpr size_t kSmallest = size_t{1} << 20;  // below this malloc reuses freed blocks well
constexpr size_t kMostKept = size_t{1} << 30;

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free;  // bytes -> block
  size_t bytes = 0;
};

// Never destroyed: a batch may be freed after static destructors have run.
Cache& cache() {
  static auto* c = new Cache;
  return *c;
}

void* take(size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    if (auto it = c.free.find(bytes); it != c.free.end()) {
      void* block = it->second;
      c.free.erase(it);
      c.bytes -= bytes;
      return block;
    }
  }
  return c10::alloc_cpu(bytes);
}

void give_back(void* block, size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    if (c.bytes + bytes <= kMostKept) {
      c.free.emplace(bytes, block);
      c.bytes += bytes;
      return;
    }
  }
  c10::free_cpu(block);
}

}  // namespace

torch::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype) {
  const size_t bytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  if (bytes < kSmallest) return torch::empty(sizes, torch::dtype(dtype));
  return torch::from_blob(take(bytes), sizes, [bytes](void* block) { give_back(block, bytes); }, torch::dtype(dtype));
}

size_t pooled_bytes_kept() {
  std::lock_guard lock(cache().mutex);
  return cache().bytes;
}

}  // namespace facet::data
