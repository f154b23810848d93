// The per-element conversions the CUDA kernels run (exec/convert_element.h), executed on the CPU
// and compared bit for bit with base::convert_elements, the reference of every path: all 2^16
// patterns of each 16-bit source, and for fp32 sources every rounding boundary of both 16-bit
// formats plus a dense sweep of the 32-bit space. A few exact values pin both to IEEE behaviour.
#include "ucp/exec/convert_element.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "ucp/base/convert.h"
#include "ucp/exec/device_stager.h"

namespace ucp::exec {
namespace {

using base::DType;

template <typename From, typename To>
std::vector<To> reference(DType from, DType to, const std::vector<From>& in) {
  std::vector<To> out(in.size());
  base::convert_elements(from, reinterpret_cast<const std::byte*>(in.data()), to,
                         reinterpret_cast<std::byte*>(out.data()), in.size());
  return out;
}

std::vector<std::uint16_t> all_16_bit_patterns() {
  std::vector<std::uint16_t> v(1u << 16);
  for (std::uint32_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint16_t>(i);
  return v;
}

// Every value where rounding to a 16-bit format is decided: for each 16-bit pattern h (as f32 via
// the given widening), the f32 values just below, at and just above the midpoint to its
// successor, and h itself. Plus signed zeros, subnormals, extremes, infinities and NaN payloads.
std::vector<std::uint32_t> f32_edge_patterns() {
  std::vector<std::uint32_t> v;
  for (std::uint32_t h = 0; h < (1u << 16); ++h) {
    const std::uint16_t b = static_cast<std::uint16_t>(h);
    for (std::uint32_t x : {element::f32_bits_from_bf16(b), element::f32_bits_from_f16(b)}) {
      v.push_back(x);
      v.push_back(x + 1);
      v.push_back(x - 1);
    }
    // bf16 ties: exactly halfway (low 16 bits 0x8000), either side.
    const std::uint32_t bf = h << 16;
    for (std::uint32_t d : {0x7FFFu, 0x8000u, 0x8001u}) v.push_back(bf | d);
    // f16 ties in the normal range: 13 dropped bits, halfway is 0x1000.
    const std::uint32_t f16_normal = (h << 13);
    for (std::uint32_t d : {0x0FFFu, 0x1000u, 0x1001u}) v.push_back(0x38000000u + f16_normal + d);
  }
  // f16 subnormal ties: m * 2^-24 + 2^-25 for every subnormal m, and its neighbours.
  for (std::uint32_t m = 0; m < 0x400u; ++m) {
    const float tie = (static_cast<float>(m) + 0.5f) * 5.9604644775390625e-8f;  // exact: 2^-24
    std::uint32_t u;
    std::memcpy(&u, &tie, sizeof u);
    for (std::uint32_t x : {u - 1, u, u + 1}) {
      v.push_back(x);
      v.push_back(x | 0x80000000u);
    }
  }
  for (std::uint32_t x : {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x00800000u, 0x7F7FFFFFu, 0xFF7FFFFFu,
                          0x7F800000u, 0xFF800000u, 0x7F800001u, 0xFF800001u, 0x7FC00000u, 0xFFC00000u, 0x7FFFFFFFu,
                          0xFFFFFFFFu, 0x7FA00000u, 0x7F80FFFFu, 0x7FBFFFFFu, 0x477FEFFFu, 0x477FF000u, 0x477FF001u,
                          0x47800000u, 0x38800000u, 0x387FFFFFu, 0x33000000u, 0x33000001u, 0x32FFFFFFu})
    v.push_back(x);
  return v;
}

TEST(ConvertElement, Bf16ToF32AllPatterns) {
  const auto in = all_16_bit_patterns();
  const auto want = reference<std::uint16_t, std::uint32_t>(DType::kBF16, DType::kF32, in);
  for (std::size_t i = 0; i < in.size(); ++i)
    ASSERT_EQ(element::f32_bits_from_bf16(in[i]), want[i]) << std::hex << "bf16 0x" << in[i];
}

TEST(ConvertElement, F16ToF32AllPatterns) {
  const auto in = all_16_bit_patterns();
  const auto want = reference<std::uint16_t, std::uint32_t>(DType::kF16, DType::kF32, in);
  for (std::size_t i = 0; i < in.size(); ++i)
    ASSERT_EQ(element::f32_bits_from_f16(in[i]), want[i]) << std::hex << "f16 0x" << in[i];
}

TEST(ConvertElement, Bf16AndF16CrossAllPatterns) {
  const auto in = all_16_bit_patterns();
  const auto to_f16 = reference<std::uint16_t, std::uint16_t>(DType::kBF16, DType::kF16, in);
  const auto to_bf16 = reference<std::uint16_t, std::uint16_t>(DType::kF16, DType::kBF16, in);
  for (std::size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(element::f16_from_f32_bits(element::f32_bits_from_bf16(in[i])), to_f16[i]) << std::hex << in[i];
    ASSERT_EQ(element::bf16_from_f32_bits(element::f32_bits_from_f16(in[i])), to_bf16[i]) << std::hex << in[i];
  }
}

void check_f32_narrowing(const std::vector<std::uint32_t>& in) {
  const auto bf16 = reference<std::uint32_t, std::uint16_t>(DType::kF32, DType::kBF16, in);
  const auto f16 = reference<std::uint32_t, std::uint16_t>(DType::kF32, DType::kF16, in);
  for (std::size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(element::bf16_from_f32_bits(in[i]), bf16[i]) << std::hex << "f32 0x" << in[i];
    ASSERT_EQ(element::f16_from_f32_bits(in[i]), f16[i]) << std::hex << "f32 0x" << in[i];
  }
}

TEST(ConvertElement, F32ToBf16AndF16AtEveryRoundingBoundary) { check_f32_narrowing(f32_edge_patterns()); }

TEST(ConvertElement, F32ToBf16AndF16DenseSweep) {
  // Every 4099th pattern (odd step: hits every residue of the dropped bits), about a million values.
  std::vector<std::uint32_t> in;
  for (std::uint64_t x = 0; x <= 0xFFFFFFFFull; x += 4099) in.push_back(static_cast<std::uint32_t>(x));
  check_f32_narrowing(in);
}

TEST(ConvertElement, ExactValues) {
  EXPECT_EQ(element::bf16_from_f32_bits(0x3F800000u), 0x3F80u);  // 1.0
  EXPECT_EQ(element::f16_from_f32_bits(0x3F800000u), 0x3C00u);   // 1.0
  EXPECT_EQ(element::f16_from_f32_bits(0x477FE000u), 0x7BFFu);   // 65504, largest f16
  EXPECT_EQ(element::f16_from_f32_bits(0x477FF000u), 0x7C00u);   // 65520: tie rounds to even = inf
  EXPECT_EQ(element::f16_from_f32_bits(0x33800000u), 0x0001u);   // 2^-24, smallest subnormal
  EXPECT_EQ(element::f16_from_f32_bits(0x33000000u), 0x0000u);   // 2^-25: tie to even (0)
  EXPECT_EQ(element::f16_from_f32_bits(0x33C00000u), 0x0002u);   // 1.5 * 2^-24: tie to even (2)
  EXPECT_EQ(element::bf16_from_f32_bits(0x3F808000u), 0x3F80u);  // tie to even (down)
  EXPECT_EQ(element::bf16_from_f32_bits(0x3F818000u), 0x3F82u);  // tie to even (up)
  EXPECT_EQ(element::bf16_from_f32_bits(0xFF800001u), 0xFFC0u);  // signalling NaN -> quiet, sign kept
  EXPECT_EQ(element::f16_from_f32_bits(0xFFC00000u), 0xFE00u);
  EXPECT_EQ(element::f32_bits_from_f16(0x7C01u), 0x7FC02000u);   // sNaN payload kept, made quiet
  EXPECT_EQ(element::f32_bits_from_f16(0x0001u), 0x33800000u);
  EXPECT_EQ(element::f32_bits_from_f16(0x8000u), 0x80000000u);
}

TEST(StagerChunkBytes, QuarterOfTheBudgetAlignedWithAFloor) {
  EXPECT_EQ(stager_chunk_bytes(256u << 20), 64u << 20);
  EXPECT_EQ(stager_chunk_bytes((1u << 20) + 1000), 262144u);  // (1 MiB + 1000) / 4 = 262394, down to 256s
  EXPECT_EQ(stager_chunk_bytes(1000), 64u << 10);
  EXPECT_EQ(stager_chunk_bytes(12345678) % 256, 0u);
}

}  // namespace
}  // namespace ucp::exec
