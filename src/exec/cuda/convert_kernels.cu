// The CUDA cast kernels behind cuda_convert (exec/cuda_convert.h). One grid-stride kernel per
// conversion; each element goes through exec/convert_element.h, the code the CPU tests compare
// with base::convert_elements over every 16-bit pattern.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "ucp/exec/convert_element.h"
#include "ucp/exec/cuda_convert.h"

namespace ucp::exec {
namespace {

using base::DType;

enum class Op : int { kBf16ToF32, kF16ToF32, kF32ToBf16, kF32ToF16, kBf16ToF16, kF16ToBf16 };

template <typename From, typename To>
__device__ inline To convert_one(Op op, From v);

template <>
__device__ inline std::uint32_t convert_one<std::uint16_t, std::uint32_t>(Op op, std::uint16_t v) {
  return op == Op::kBf16ToF32 ? element::f32_bits_from_bf16(v) : element::f32_bits_from_f16(v);
}
template <>
__device__ inline std::uint16_t convert_one<std::uint32_t, std::uint16_t>(Op op, std::uint32_t v) {
  return op == Op::kF32ToBf16 ? element::bf16_from_f32_bits(v) : element::f16_from_f32_bits(v);
}
template <>
__device__ inline std::uint16_t convert_one<std::uint16_t, std::uint16_t>(Op op, std::uint16_t v) {
  return op == Op::kBf16ToF16 ? element::f16_from_f32_bits(element::f32_bits_from_bf16(v))
                              : element::bf16_from_f32_bits(element::f32_bits_from_f16(v));
}

// Aligned: typed loads and stores. Unaligned (a view at an odd byte offset): byte copies, which
// the compiler turns into byte loads; correctness first, such views are rare.
template <typename From, typename To, bool Aligned>
__global__ void convert_kernel(To* dst, const From* src, std::uint64_t n, Op op) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (Aligned) {
      dst[i] = convert_one<From, To>(op, src[i]);
    } else {
      From v;
      memcpy(&v, reinterpret_cast<const unsigned char*>(src) + i * sizeof(From), sizeof v);
      const To out = convert_one<From, To>(op, v);
      memcpy(reinterpret_cast<unsigned char*>(dst) + i * sizeof(To), &out, sizeof out);
    }
  }
}

constexpr unsigned kThreads = 256;
constexpr std::uint64_t kMaxBlocks = 1u << 16;  // grid-stride beyond this

template <typename From, typename To>
base::Status launch(void* dst, const void* src, std::uint64_t n, Op op, cudaStream_t stream) {
  const std::uint64_t blocks64 = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(blocks64 < kMaxBlocks ? blocks64 : kMaxBlocks);
  const bool aligned = reinterpret_cast<std::uintptr_t>(src) % sizeof(From) == 0 &&
                       reinterpret_cast<std::uintptr_t>(dst) % sizeof(To) == 0;
  if (aligned) {
    convert_kernel<From, To, true><<<blocks, kThreads, 0, stream>>>(static_cast<To*>(dst),
                                                                    static_cast<const From*>(src), n, op);
  } else {
    convert_kernel<From, To, false><<<blocks, kThreads, 0, stream>>>(static_cast<To*>(dst),
                                                                     static_cast<const From*>(src), n, op);
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    return base::unavailable(std::string("cuda_convert: kernel launch failed: ") + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
  return base::Status();
}

bool is_cuda_float(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

}  // namespace

bool cuda_can_convert(DType src_dtype, DType dst_dtype) {
  return src_dtype == dst_dtype || (is_cuda_float(src_dtype) && is_cuda_float(dst_dtype));
}

base::Status cuda_convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, std::uint64_t n,
                          CUstream_st* stream) {
  if (!cuda_can_convert(src_dtype, dst_dtype)) {
    return base::invalid_argument(std::string("cuda_convert: no kernel for ") + std::string(base::dtype_name(src_dtype)) +
                                  " -> " + std::string(base::dtype_name(dst_dtype)));
  }
  if (n == 0) return base::Status();
  if (src_dtype == dst_dtype) {
    const cudaError_t e = cudaMemcpyAsync(dst, src, n * base::dtype_size(src_dtype), cudaMemcpyDeviceToDevice, stream);
    if (e != cudaSuccess) {
      return base::unavailable(std::string("cuda_convert: cudaMemcpyAsync failed: ") + cudaGetErrorName(e) + ": " +
                               cudaGetErrorString(e));
    }
    return base::Status();
  }
  using U16 = std::uint16_t;
  using U32 = std::uint32_t;
  if (src_dtype == DType::kBF16 && dst_dtype == DType::kF32) return launch<U16, U32>(dst, src, n, Op::kBf16ToF32, stream);
  if (src_dtype == DType::kF16 && dst_dtype == DType::kF32) return launch<U16, U32>(dst, src, n, Op::kF16ToF32, stream);
  if (src_dtype == DType::kF32 && dst_dtype == DType::kBF16) return launch<U32, U16>(dst, src, n, Op::kF32ToBf16, stream);
  if (src_dtype == DType::kF32 && dst_dtype == DType::kF16) return launch<U32, U16>(dst, src, n, Op::kF32ToF16, stream);
  if (src_dtype == DType::kBF16 && dst_dtype == DType::kF16) return launch<U16, U16>(dst, src, n, Op::kBf16ToF16, stream);
  return launch<U16, U16>(dst, src, n, Op::kF16ToBf16, stream);
}

}  // namespace ucp::exec
