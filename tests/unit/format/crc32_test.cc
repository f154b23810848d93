// CRC-32 against published check values and against direct computation over concatenations.
#include "ucp/format/crc32.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <iostream>
#include <random>
#include <string_view>
#include <vector>

namespace ucp::format {
namespace {

std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Crc32, PublishedCheckValues) {
  // The standard CRC-32/ISO-HDLC check value and two widely quoted strings.
  EXPECT_EQ(crc32_update(0, as_bytes("")), 0x00000000u);
  EXPECT_EQ(crc32_update(0, as_bytes("123456789")), 0xCBF43926u);
  EXPECT_EQ(crc32_update(0, as_bytes("The quick brown fox jumps over the lazy dog")), 0x414FA339u);
  EXPECT_EQ(crc32_update(0, as_bytes("a")), 0xE8B7BE43u);
}

TEST(Crc32, IncrementalEqualsOneShot) {
  const std::string_view text = "The quick brown fox jumps over the lazy dog";
  for (std::size_t split = 0; split <= text.size(); ++split) {
    std::uint32_t crc = crc32_update(0, as_bytes(text.substr(0, split)));
    crc = crc32_update(crc, as_bytes(text.substr(split)));
    EXPECT_EQ(crc, 0x414FA339u) << "split at " << split;
  }
}

TEST(Crc32, CombineEqualsCrcOfConcatenation) {
  std::mt19937 rng(12345);
  std::vector<std::byte> data(70000);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  const std::span<const std::byte> all(data);
  const std::uint32_t whole = crc32_update(0, all);
  for (std::size_t split : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{4096},
                            std::size_t{65537}, data.size() - 1, data.size()}) {
    const auto a = all.first(split);
    const auto b = all.subspan(split);
    EXPECT_EQ(crc32_combine(crc32_update(0, a), crc32_update(0, b), b.size()), whole) << "split at " << split;
  }
}

// The accelerated path folds 64 bytes at a time and hands the rest to zlib: every length around
// those boundaries, at every alignment, continuing from arbitrary registers, must equal zlib.
TEST(Crc32, EqualsZlibAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::vector<std::byte> data(std::size_t{1} << 20);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  auto zlib = [](std::uint32_t crc, std::span<const std::byte> s) {
    return static_cast<std::uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(s.data()), s.size()));
  };
  const std::span<const std::byte> all(data);
  int mismatches = 0;
  for (std::size_t len = 0; len <= 2100; ++len)
    for (std::size_t offset : {0, 1, 3, 8, 15}) {
      const std::uint32_t start = static_cast<std::uint32_t>(rng());
      const auto piece = all.subspan(offset, len);
      if (crc32_update(start, piece) != zlib(start, piece)) ++mismatches;
    }
  EXPECT_EQ(mismatches, 0);
  for (std::size_t len : {std::size_t{65536}, std::size_t{65536 + 17}, data.size() - 5})
    EXPECT_EQ(crc32_update(0, all.subspan(5, len)), zlib(0, all.subspan(5, len))) << len;
  std::cout << "crc32_update " << (crc32_is_accelerated() ? "uses PCLMULQDQ" : "uses zlib") << "\n";
}

TEST(Crc32, CombineWithEmptySecondPartIsIdentity) {
  const std::uint32_t a = crc32_update(0, as_bytes("123456789"));
  EXPECT_EQ(crc32_combine(a, 0, 0), a);
}

TEST(Crc32, CombinedFiveGibOfZerosMatchesPython) {
  // Expected value from Python: c = 0; for _ in range(80): c = zlib.crc32(bytes(1 << 26), c)
  // i.e. the CRC of 5 GiB of zero bytes computed directly, byte by byte.
  const std::vector<std::byte> mib(std::size_t{1} << 20);
  std::uint32_t block = crc32_update(0, mib);
  std::uint64_t block_len = mib.size();
  std::uint32_t crc = 0;
  std::uint64_t len = 0;
  std::uint64_t want = std::uint64_t{5} << 30;
  // Binary doubling: add the current block whenever its bit is set in the wanted length.
  for (std::uint64_t n = want / block_len; n != 0; n >>= 1) {
    if (n & 1) {
      crc = crc32_combine(crc, block, block_len);
      len += block_len;
    }
    block = crc32_combine(block, block, block_len);
    block_len *= 2;
  }
  ASSERT_EQ(len, want);
  EXPECT_EQ(crc, 0x193838C3u);
}

}  // namespace
}  // namespace ucp::format
