// Per-element float conversions (bf16/fp16 <-> fp32) as __host__ __device__ inline functions: the
// CUDA cast kernels (src/exec/cuda/convert_kernels.cu) call exactly these, and the CPU unit test
// runs the same code against base/convert.h, the reference every path must match bit for bit.
// Integer arithmetic on the bit patterns, as in base/convert.cc, so the result does not depend on
// the device's float modes; the two float additions use explicit round-to-nearest-even intrinsics
// on the device (no FMA contraction, no flush-to-zero: their operands and results are normal).
// Plain C++20 when not compiled by nvcc.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define UCP_HOST_DEVICE __host__ __device__
#else
#define UCP_HOST_DEVICE
#endif

namespace ucp::exec::element {

UCP_HOST_DEVICE inline float float_from_bits(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

UCP_HOST_DEVICE inline std::uint32_t bits_from_float(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

UCP_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// f32 bits -> bf16 bits: round to nearest even; NaN -> quiet NaN with the sign kept; overflow
/// rounds into the infinity encoding.
UCP_HOST_DEVICE inline std::uint16_t bf16_from_f32_bits(std::uint32_t u) {
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>(((u >> 16) & 0x8000u) | 0x7FC0u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// f32 bits -> f16 bits: round to nearest even, overflow -> inf, NaN -> 0x7E00 with the sign kept,
/// f16 subnormals rounded exactly (|v| + 0.5f puts the f16 subnormal step at the f32 ulp).
UCP_HOST_DEVICE inline std::uint16_t f16_from_f32_bits(std::uint32_t u) {
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7FFFFFFFu;
  std::uint32_t magnitude;
  if (a >= 0x47800000u) {  // |v| >= 2^16, inf, NaN
    magnitude = a > 0x7F800000u ? 0x7E00u : 0x7C00u;
  } else if (a < 0x38800000u) {  // |v| < 2^-14: f16 subnormal or zero
    magnitude = bits_from_float(add_rn(float_from_bits(a), 0.5f)) - 0x3F000000u;
  } else {
    const std::uint32_t rebiased = a - 0x38000000u;  // exponent 127 -> 15
    magnitude = (rebiased + 0xFFFu + ((rebiased >> 13) & 1u)) >> 13;
  }
  return static_cast<std::uint16_t>(sign | magnitude);
}

/// bf16 bits -> f32 bits, exact.
UCP_HOST_DEVICE inline std::uint32_t f32_bits_from_bf16(std::uint16_t b) { return static_cast<std::uint32_t>(b) << 16; }

/// f16 bits -> f32 bits, exact; NaN made quiet (payload and sign kept), as x86 and torch do.
UCP_HOST_DEVICE inline std::uint32_t f32_bits_from_f16(std::uint16_t h) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  const std::uint32_t a = h & 0x7FFFu;
  if (a >= 0x7C00u) return sign | (((a << 13) + 0x70000000u) | (a > 0x7C00u ? 0x00400000u : 0u));
  if (a >= 0x0400u) return sign | ((a << 13) + 0x38000000u);
  // Subnormal or zero: 0.5 + m * 2^-24 is exact in f32, and so is subtracting 0.5 again.
  return sign | bits_from_float(add_rn(float_from_bits(a | 0x3F000000u), -0.5f));
}

}  // namespace ucp::exec::element
