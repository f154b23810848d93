// Host API of the CUDA cast kernels: bf16/fp16 <-> fp32 (and bf16 <-> fp16) on device buffers,
// bit-identical to base::convert_elements (the kernels run exec/convert_element.h, which the CPU
// tests check against it). Built only with CUDA (target ucp_cuda, which defines UCP_HAVE_CUDA=1);
// no CUDA header is needed to include this one.
#pragma once

#if defined(UCP_HAVE_CUDA) && UCP_HAVE_CUDA

#include <cstdint>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace ucp::exec {

/// True if cuda_convert supports src -> dst: identical types (a device copy), or any pair among
/// f32, bf16 and f16.
bool cuda_can_convert(base::DType src_dtype, base::DType dst_dtype);

/// Enqueues the conversion of `n` elements on `stream` (nullptr: the legacy default stream).
/// `src` and `dst` are device pointers (no alignment required) that must not overlap unless the
/// types are equal. Returns after enqueuing: synchronise the stream before reading `dst`.
/// kInvalidArgument for an unsupported pair; kUnavailable when the launch fails.
base::Status cuda_convert(void* dst, base::DType dst_dtype, const void* src, base::DType src_dtype, std::uint64_t n,
                          CUstream_st* stream);

}  // namespace ucp::exec

#endif  // UCP_HAVE_CUDA
