// Content hashes: XXH64 equal to the reference implementation's digests, whatever the chunking.
#include "core/hash.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace facet::test_hash {
namespace {

std::string xxh64(std::string_view s) {
  Hash64 h;
  h.update(s.data(), s.size());
  return h.hex();
}

TEST(Hash64, EqualsTheReferenceDigests) {
  // xxhsum -H1 / python-xxhash's documented values.
  EXPECT_EQ(xxh64(""), "ef46db3751d8e999");
  EXPECT_EQ(xxh64("a"), "d24ec4f1a98c6e5b");
  EXPECT_EQ(xxh64("abc"), "44bc2cf5ad770999");
  EXPECT_EQ(xxh64("Nobody inspects the spammish repetition"), "fbcea83c8a378bf1");  // 39 bytes: stripes + tail
}

TEST(Hash64, AnyChunkingGivesTheSameDigest) {
  std::vector<uint8_t> bytes(10'000);
  std::mt19937 rng(3);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  Hash64 whole;
  whole.update(bytes);
  for (size_t chunk : {1, 3, 7, 31, 32, 33, 100, 4096}) {
    Hash64 pieces;
    for (size_t i = 0; i < bytes.size(); i += chunk)
      pieces.update(std::span<const uint8_t>(bytes).subspan(i, std::min(chunk, bytes.size() - i)));
    EXPECT_EQ(pieces.digest(), whole.digest()) << "chunks of " << chunk;
  }
  // digest() does not end the stream.
  Hash64 h;
  h.update(bytes.data(), 100);
  (void)h.digest();
  h.update(bytes.data() + 100, bytes.size() - 100);
  EXPECT_EQ(h.digest(), whole.digest());
}

}  // namespace
}  // namespace facet::test_hash
