// Device staging for the GPU path: bytes read on the host are copied through double-buffered
// pinned memory to the device and cast there (cuda_convert), leaving the converted tensor data in
// device memory for NCCL; `download` brings device bytes back for the writer. The H2D copy of one
// chunk overlaps the host copy into the other pinned chunk and the previous chunk's cast.
//
// stager_chunk_bytes is pure and always available (CPU-tested); the class needs CUDA (UCP_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <memory>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace ucp::exec {

/// Bytes per staging chunk for a budget covering everything the stager holds (2 pinned + 2 device
/// chunks): budget / 4, rounded down to a multiple of 256 (a multiple of every element size), at
/// least 64 KiB (a floor that may exceed tiny budgets: below it, per-chunk latency dominates).
inline std::uint64_t stager_chunk_bytes(std::uint64_t staging_budget) {
  constexpr std::uint64_t kMinChunk = 64u << 10;
  const std::uint64_t chunk = staging_budget / 4 / 256 * 256;
  return chunk < kMinChunk ? kMinChunk : chunk;
}

}  // namespace ucp::exec

#if defined(UCP_HAVE_CUDA) && UCP_HAVE_CUDA

struct CUstream_st;
struct CUevent_st;

namespace ucp::exec {

class DeviceStager {
 public:
  /// Allocates the staging on `device` (made current) and a stream of its own.
  static base::Result<std::unique_ptr<DeviceStager>> create(int device, std::uint64_t staging_budget);
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  /// Enqueues host `src` (n elements of src_dtype, ordinary pageable memory) -> device `dst` as
  /// dst_dtype (same dtype: a plain copy). When it returns, `src` may be reused; `dst` is complete
  /// after synchronize(). Precondition-free: unsupported pairs return kInvalidArgument.
  base::Status upload(const void* src, base::DType src_dtype, std::uint64_t n, void* dst, base::DType dst_dtype);
  /// Copies `bytes` from device `src` to host `dst` (pageable); complete when it returns.
  base::Status download(void* dst, const void* src, std::uint64_t bytes);
  /// Waits for everything enqueued.
  base::Status synchronize();

  CUstream_st* stream() const { return stream_; }
  std::uint64_t chunk_bytes() const { return chunk_; }

 private:
  DeviceStager() = default;
  int device_ = 0;
  std::uint64_t chunk_ = 0;
  CUstream_st* stream_ = nullptr;
  void* pinned_[2] = {nullptr, nullptr};
  void* staged_[2] = {nullptr, nullptr};  // device copies of the source chunks, before the cast
  CUevent_st* copied_[2] = {nullptr, nullptr};  // pinned_[i] may be overwritten once this fired
  bool pending_[2] = {false, false};
};

}  // namespace ucp::exec

#endif  // UCP_HAVE_CUDA
