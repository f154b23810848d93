#include "ucp/base/convert.h"

#include <bit>
#include <cstdint>
#include <cstring>

namespace ucp::base {
namespace {

// ---------------------------------------------------------------- scalar kernels
// Every kernel computes all candidate results and then selects one, with no early return:
// g++ turns that into vector compares and blends, which is what lets the block loops below
// vectorise at -O2.

constexpr std::uint32_t kF32AbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kF32Inf = 0x7F800000u;

// cond ? a : b written as mask arithmetic. A plain ternary whose operands include a float
// operation may be sunk into a branch that, under -ftrapping-math, g++ refuses to if-convert
// again, which would stop vectorisation.
inline std::uint32_t select(bool cond, std::uint32_t a, std::uint32_t b) {
  const std::uint32_t mask = 0u - static_cast<std::uint32_t>(cond);
  return (a & mask) | (b & ~mask);
}

// f32 -> bf16: round the low 16 bits to nearest even. Subnormals round the same way (their bf16
// encoding is the f32 encoding truncated), a carry out of the mantissa bumps the exponent, and
// everything from halfway above the largest finite bf16 carries into the infinity encoding.
inline std::uint16_t bf16_from_f32_bits(std::uint32_t u) {
  const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t quiet_nan = ((u >> 16) & 0x8000u) | 0x7FC0u;
  return static_cast<std::uint16_t>((u & kF32AbsMask) > kF32Inf ? quiet_nan : rounded);
}

// f32 -> f16. Three ranges, all computed, one selected:
//  - |v| >= 2^16: infinity, or the canonical quiet NaN;
//  - 2^-14 <= |v| < 2^16: rebias the exponent (127 -> 15) and round 13 mantissa bits to nearest
//    even; a carry reaches the next binade or, above 65520, the infinity encoding;
//  - |v| < 2^-14 (f16 subnormal or zero): |v| + 0.5f lands in [0.5, 1) whose ulp is 2^-24, the f16
//    subnormal step, so the FPU's own round-to-nearest-even does the rounding; the result's
//    mantissa is the f16 encoding (0x400 when it rounds up to the smallest normal).
inline std::uint16_t f16_from_f32_bits(std::uint32_t u) {
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & kF32AbsMask;
  const std::uint32_t rebiased = a - 0x38000000u;  // (127 - 15) << 23
  const std::uint32_t normal = (rebiased + 0xFFFu + ((rebiased >> 13) & 1u)) >> 13;
  const float shifted = std::bit_cast<float>(a) + 0.5f;
  const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(shifted) - 0x3F000000u;
  const std::uint32_t huge = a > kF32Inf ? 0x7E00u : 0x7C00u;
  std::uint32_t magnitude = select(a < 0x38800000u, subnormal, normal);  // 0x38800000 = 2^-14
  magnitude = select(a >= 0x47800000u, huge, magnitude);                 // 0x47800000 = 2^16
  return static_cast<std::uint16_t>(sign | magnitude);
}

// f16 -> f32, exact. Normals rebias the exponent; inf/NaN keep their payload (NaN made quiet, as
// x86's vcvtph2ps and torch do); subnormals are 0.5f + m * 2^-24 minus 0.5f, exact in f32.
inline std::uint32_t f32_bits_from_f16(std::uint16_t h) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  const std::uint32_t a = h & 0x7FFFu;
  const std::uint32_t normal = (a << 13) + 0x38000000u;
  const std::uint32_t special = ((a << 13) + 0x70000000u) | (a > 0x7C00u ? 0x00400000u : 0u);
  const float sub = std::bit_cast<float>(a | 0x3F000000u) - 0.5f;
  const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(sub);
  std::uint32_t magnitude = select(a >= 0x7C00u, special, normal);
  magnitude = select(a < 0x0400u, subnormal, magnitude);
  return sign | magnitude;
}

inline std::uint32_t f32_bits_from_bf16(std::uint16_t b) { return static_cast<std::uint32_t>(b) << 16; }

// f64 -> f32 rounded to odd: truncate toward zero, then set the last bit if anything was lost.
// Rounding to odd into a format with at least two more significand bits than the target, then to
// nearest even into the target, equals one correct rounding of the original value (f32 has 24
// bits; bf16 needs 8 + 2 and f16 11 + 2, and f32's exponent range covers theirs, with room below
// their smallest subnormals). That is how f64 -> f16/bf16 round once, without the double rounding
// of going through a nearest-even f32. NaN passes through unchanged (hardware conversion).
inline std::uint32_t f32_bits_round_to_odd(double d) {
  const float f = static_cast<float>(d);
  const double back = static_cast<double>(f);
  std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  // Rounded away from zero (false for NaN): step back one ulp toward zero. Works for +/-inf
  // produced by overflow too (inf - 1 ulp is the largest finite value).
  bits -= (back < 0 ? -back : back) > (d < 0 ? -d : d) ? 1u : 0u;
  // Inexact and not NaN: make it odd.
  bits |= (back != d && d == d) ? 1u : 0u;
  return bits;
}

// ---------------------------------------------------------------- loops
// g++ -O2 (GCC 12's "very cheap" vectoriser) only vectorises loops whose trip count is a known
// multiple of the vector width, so the bulk runs in fixed-size blocks copied through small local
// arrays (memcpy: no alignment or aliasing assumption on the caller's byte pointers), and only the
// tail runs a variable-length scalar loop.
constexpr std::size_t kBlock = 256;

template <typename From, typename To, typename Fn>
inline void convert_loop(const std::byte* src, std::byte* dst, std::size_t count, Fn fn) {
  From in[kBlock];
  To out[kBlock];
  std::size_t i = 0;
  for (; count - i >= kBlock; i += kBlock) {
    std::memcpy(in, src + i * sizeof(From), sizeof(in));
    for (std::size_t j = 0; j < kBlock; ++j) out[j] = fn(in[j]);
    std::memcpy(dst + i * sizeof(To), out, sizeof(out));
  }
  const std::size_t rest = count - i;
  if (rest == 0) return;
  std::memcpy(in, src + i * sizeof(From), rest * sizeof(From));
  for (std::size_t j = 0; j < rest; ++j) out[j] = fn(in[j]);
  std::memcpy(dst + i * sizeof(To), out, rest * sizeof(To));
}

bool is_float_kind(DType t) {
  return t == DType::kF64 || t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

float f32_from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t bits_from_f32(float f) { return std::bit_cast<std::uint32_t>(f); }

// Everything else goes through f32 (exact for f16/bf16 sources) or f64.
void convert_from_f32(const std::byte* src, DType to, std::byte* dst, std::size_t count) {
  using U32 = std::uint32_t;
  switch (to) {
    case DType::kBF16:
      return convert_loop<U32, std::uint16_t>(src, dst, count, [](U32 u) { return bf16_from_f32_bits(u); });
    case DType::kF16:
      return convert_loop<U32, std::uint16_t>(src, dst, count, [](U32 u) { return f16_from_f32_bits(u); });
    case DType::kF64:
      return convert_loop<float, double>(src, dst, count, [](float v) { return static_cast<double>(v); });
    default:
      return;
  }
}

}  // namespace

bool can_convert(DType from, DType to) { return from == to || (is_float_kind(from) && is_float_kind(to)); }

void convert_elements(DType from, const std::byte* src, DType to, std::byte* dst, std::size_t count) {
  if (from == to) {
    if (count != 0) std::memmove(dst, src, count * dtype_size(from));
    return;
  }
  using U16 = std::uint16_t;
  using U32 = std::uint32_t;
  switch (from) {
    case DType::kF32:
      return convert_from_f32(src, to, dst, count);
    case DType::kBF16:
      switch (to) {
        case DType::kF32:
          return convert_loop<U16, U32>(src, dst, count, [](U16 b) { return f32_bits_from_bf16(b); });
        case DType::kF16:
          return convert_loop<U16, U16>(src, dst, count,
                                        [](U16 b) { return f16_from_f32_bits(f32_bits_from_bf16(b)); });
        case DType::kF64:
          return convert_loop<U16, double>(
              src, dst, count, [](U16 b) { return static_cast<double>(f32_from_bits(f32_bits_from_bf16(b))); });
        default:
          return;
      }
    case DType::kF16:
      switch (to) {
        case DType::kF32:
          return convert_loop<U16, U32>(src, dst, count, [](U16 h) { return f32_bits_from_f16(h); });
        case DType::kBF16:
          return convert_loop<U16, U16>(src, dst, count,
                                        [](U16 h) { return bf16_from_f32_bits(f32_bits_from_f16(h)); });
        case DType::kF64:
          return convert_loop<U16, double>(
              src, dst, count, [](U16 h) { return static_cast<double>(f32_from_bits(f32_bits_from_f16(h))); });
        default:
          return;
      }
    case DType::kF64:
      switch (to) {
        case DType::kF32:
          return convert_loop<double, float>(src, dst, count, [](double d) { return static_cast<float>(d); });
        case DType::kBF16:
          return convert_loop<double, U16>(src, dst, count,
                                           [](double d) { return bf16_from_f32_bits(f32_bits_round_to_odd(d)); });
        case DType::kF16:
          return convert_loop<double, U16>(src, dst, count,
                                           [](double d) { return f16_from_f32_bits(f32_bits_round_to_odd(d)); });
        default:
          return;
      }
    default:
      return;
  }
}

float bf16_to_f32(std::uint16_t bits) { return f32_from_bits(f32_bits_from_bf16(bits)); }
std::uint16_t f32_to_bf16(float v) { return bf16_from_f32_bits(bits_from_f32(v)); }
float f16_to_f32(std::uint16_t bits) { return f32_from_bits(f32_bits_from_f16(bits)); }
std::uint16_t f32_to_f16(float v) { return f16_from_f32_bits(bits_from_f32(v)); }

}  // namespace ucp::base
