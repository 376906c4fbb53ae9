#include "core/hash.h"

#include "core/file_io.h"

#include <fmt/format.h>

#include <cstring>

namespace facet {
namespace {

constexpr uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL, P3 = 0x165667B19E3779F9ULL,
                   P4 = 0x85EBCA77C2B2AE63ULL, P5 = 0x27D4EB2F165667C5ULL;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads (the reference reads words little-endian on every machine).
uint64_t read64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t read32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

uint64_t round(uint64_t acc, uint64_t input) { return rotl(acc + input * P2, 31) * P1; }
uint64_t merge(uint64_t acc, uint64_t lane) { return (acc ^ round(0, lane)) * P1 + P4; }

}  // namespace

Hash64::Hash64(uint64_t seed) : seed_(seed), lanes_{seed + P1 + P2, seed + P2, seed, seed - P1} {}

void Hash64::update(std::span<const uint8_t> bytes) {
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  total_ += n;
  if (pending_size_ > 0) {
    const size_t take = std::min(n, 32 - pending_size_);
    std::memcpy(pending_ + pending_size_, p, take);
    pending_size_ += take;
    p += take;
    n -= take;
    if (pending_size_ < 32) return;
    for (int i = 0; i < 4; ++i) lanes_[i] = round(lanes_[i], read64(pending_ + 8 * i));
    pending_size_ = 0;
  }
  // Four independent lanes per 32-byte stripe: the multiplies pipeline, so this runs at memory speed.
  for (; n >= 32; p += 32, n -= 32) {
    lanes_[0] = round(lanes_[0], read64(p));
    lanes_[1] = round(lanes_[1], read64(p + 8));
    lanes_[2] = round(lanes_[2], read64(p + 16));
    lanes_[3] = round(lanes_[3], read64(p + 24));
  }
  std::memcpy(pending_, p, n);
  pending_size_ = n;
}

uint64_t Hash64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(lanes_[0], 1) + rotl(lanes_[1], 7) + rotl(lanes_[2], 12) + rotl(lanes_[3], 18);
    for (uint64_t lane : lanes_) h = merge(h, lane);
  } else {
    h = seed_ + P5;
  }
  h += total_;
  const uint8_t* p = pending_;
  size_t n = pending_size_;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round(0, read64(p)), 27) * P1 + P4;
  if (n >= 4) {
    h = rotl(h ^ (static_cast<uint64_t>(read32(p)) * P1), 23) * P2 + P3;
    p += 4;
    n -= 4;
  }
  for (; n > 0; ++p, --n) h = rotl(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

std::string Hash64::hex() const { return fmt::format("{:016x}", digest()); }

std::string file_hash(const std::string& path) {
  const MappedFile map(path);
  Hash64 h;
  h.update(map.bytes());
  return "xxh64:" + h.hex();
}

}  // namespace facet
