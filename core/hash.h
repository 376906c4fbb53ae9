// Content hashes of large files: XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0), computed
// incrementally so a checkpoint can be hashed while it streams into a model, one tensor at a time,
// without a second pass. Any split of the bytes into update() calls gives the same digest, and the
// digest equals the reference implementation's (`xxhsum -H1`, Python `xxhash.xxh64`), so a user can
// check a recorded hash with standard tools. Not cryptographic: it detects changed files, not forgeries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace facet {

class Hash64 {
 public:
  explicit Hash64(uint64_t seed = 0);
  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size) { update({static_cast<const uint8_t*>(data), size}); }
  uint64_t digest() const;  // the state is not changed: more bytes may follow
  std::string hex() const;  // 16 lower-case hex digits

 private:
  uint64_t seed_;
  uint64_t lanes_[4];
  uint8_t pending_[32];
  size_t pending_size_ = 0;
  uint64_t total_ = 0;
};

// "xxh64:<16 hex digits>" of one file's bytes.
std::string file_hash(const std::string& path);

}  // namespace facet
