// Element-wise dtype conversion, the CPU reference every path must match bit for bit (the CUDA
// kernels of the GPU path included): round-to-nearest-even when narrowing, NaN stays NaN (quiet,
// sign kept), overflow becomes +/-inf, subnormals handled exactly. Same-type "conversion" is a copy.
#pragma once

#include <cstddef>
#include <span>

#include "ucp/base/dtype.h"

namespace ucp::base {

/// True if convert_elements supports from -> to: any pair among f64/f32/f16/bf16, or identical types.
bool can_convert(DType from, DType to);

/// Converts `count` elements. `src` holds count*dtype_size(from) bytes, `dst` count*dtype_size(to);
/// they must not overlap unless from == to. Precondition: can_convert(from, to).
void convert_elements(DType from, const std::byte* src, DType to, std::byte* dst, std::size_t count);

/// Scalar helpers (exposed for tests and the GPU kernels' reference).
float bf16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_bf16(float v);  ///< Round to nearest even; NaN -> quiet NaN.
float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_f16(float v);   ///< Round to nearest even; overflow -> inf; subnormals exact.

}  // namespace ucp::base
