#include "ucp/format/crc32.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define UCP_CRC32_HAVE_CLMUL 1
#endif

namespace ucp::format {
namespace {

std::uint32_t crc32_zlib(std::uint32_t crc, const std::byte* p, std::size_t n) {
  // crc32_z takes a z_size_t length, but feed bounded chunks anyway so a build where z_size_t is
  // narrower than size_t can never truncate a length.
  constexpr std::size_t kChunk = std::size_t{1} << 30;
  uLong value = crc;
  while (n > 0) {
    const std::size_t step = std::min(n, kChunk);
    value = ::crc32_z(value, reinterpret_cast<const Bytef*>(p), static_cast<z_size_t>(step));
    p += step;
    n -= step;
  }
  return static_cast<std::uint32_t>(value);
}

#if UCP_CRC32_HAVE_CLMUL
// Carry-less multiplication folding (Gopal et al., "Fast CRC Computation for Generic Polynomials
// Using PCLMULQDQ Instruction", Intel, 2009), bit-reflected for the zip polynomial. Every write of
// tensor data is checksummed, and zlib's table CRC (~5.6 GB/s here) cost a fifth of the CPU
// time of a to-universal run; this runs at ~14 GB/s.
//
// Four 128-bit accumulators consume 64 bytes per step; each is folded forward 512 bits by
// multiplying its halves by x^(512+32) and x^(512-32) mod P (reflected, shifted left one), which
// keeps the message's residue mod P unchanged. The single remaining 128-bit value is congruent to
// the whole prefix, so its own CRC (from zlib, 16 bytes) is the prefix's CRC; the tail goes to zlib.
// The unit test checks the result against zlib at every length and alignment up to a few KiB.
constexpr std::uint64_t kFold512Low = 0x154442bd4, kFold512High = 0x1c6e41596;
constexpr std::uint64_t kFold128Low = 0x1751997d0, kFold128High = 0x0ccaa009e;

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load(const std::byte* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// Requires n >= 64.
__attribute__((target("pclmul,sse4.1"))) std::uint32_t crc32_clmul(std::uint32_t crc, const std::byte* p,
                                                                   std::size_t n) {
  const __m128i by4 = _mm_set_epi64x(static_cast<long long>(kFold512High), static_cast<long long>(kFold512Low));
  const __m128i by1 = _mm_set_epi64x(static_cast<long long>(kFold128High), static_cast<long long>(kFold128Low));
  // zip's CRC register starts inverted; the inverted register is XORed into the first 32 bits.
  __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(~crc)));
  __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
  p += 64;
  n -= 64;
  for (; n >= 64; p += 64, n -= 64) {
    x0 = _mm_xor_si128(fold(x0, by4), load(p));
    x1 = _mm_xor_si128(fold(x1, by4), load(p + 16));
    x2 = _mm_xor_si128(fold(x2, by4), load(p + 32));
    x3 = _mm_xor_si128(fold(x3, by4), load(p + 48));
  }
  __m128i x = _mm_xor_si128(fold(x0, by1), x1);
  x = _mm_xor_si128(fold(x, by1), x2);
  x = _mm_xor_si128(fold(x, by1), x3);
  for (; n >= 16; p += 16, n -= 16) x = _mm_xor_si128(fold(x, by1), load(p));
  std::byte folded[16];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(folded), x);
  // The folded value already carries the initial register: its CRC starts from a zero register.
  return crc32_zlib(crc32_zlib(0xFFFFFFFFu, folded, sizeof folded), p, n);
}

bool cpu_has_clmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}
#endif

// Below this, setting up the accumulators costs more than the table saves.
constexpr std::size_t kClmulMinBytes = 256;

}  // namespace

bool crc32_is_accelerated() {
#if UCP_CRC32_HAVE_CLMUL
  return cpu_has_clmul();
#else
  return false;
#endif
}

std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::byte> data) {
#if UCP_CRC32_HAVE_CLMUL
  if (data.size() >= kClmulMinBytes && cpu_has_clmul()) return crc32_clmul(crc, data.data(), data.size());
#endif
  return crc32_zlib(crc, data.data(), data.size());
}

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  // zlib takes a signed length. No file holds 2^63 bytes; the clamp only keeps the cast defined.
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<z_off64_t>::max());
  len_b = std::min(len_b, kMax);
  return static_cast<std::uint32_t>(::crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(len_b)));
}

}  // namespace ucp::format
