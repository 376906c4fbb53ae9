// Memory for the loader's large CPU tensors — batches, and per-sample CT stacks of several MB — kept
// for the next user when the last tensor using it goes. glibc hands blocks this large back to the
// system when a worker thread frees them, and the next batch or sample then pays a page fault per
// 4 KB it touches (a fifth of a 7-slice DeepLesion loader's time went to the kernel). PyTorch's
// pinned-memory allocator caches its blocks the same way; this is the pageable-memory counterpart.
#pragma once

#include <torch/torch.h>

namespace facet::data {

// An uninitialised contiguous tensor like torch::empty(sizes, dtype). Blocks of 1 MiB or more are
// taken from and returned to a process-wide cache (exact sizes, at most 1 GiB kept), from any thread;
// smaller ones are torch::empty's.
torch::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype);

// Bytes of free blocks the cache keeps now, for tests.
size_t pooled_bytes_kept();

}  // namespace facet::data
