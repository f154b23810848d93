// DeviceStager (exec/device_stager.h): pinned double buffering in front of the cast kernels.
#include "ucp/exec/device_stager.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "ucp/exec/cuda_convert.h"

namespace ucp::exec {

using base::Status;

namespace {

Status cuda_error(cudaError_t e, std::string_view call) {
  const std::string text = "DeviceStager: " + std::string(call) + " failed: " + cudaGetErrorName(e) + ": " +
                           cudaGetErrorString(e);
  return e == cudaErrorMemoryAllocation ? base::resource_exhausted(text) : base::unavailable(text);
}

#define UCP_STAGER_CHECK(call, name)                              \
  do {                                                            \
    const cudaError_t ucp_stager_rc_ = (call);                    \
    if (ucp_stager_rc_ != cudaSuccess) return cuda_error(ucp_stager_rc_, name); \
  } while (false)

}  // namespace

base::Result<std::unique_ptr<DeviceStager>> DeviceStager::create(int device, std::uint64_t staging_budget) {
  std::unique_ptr<DeviceStager> s(new (std::nothrow) DeviceStager());
  if (!s) return base::resource_exhausted("DeviceStager: out of host memory");
  s->device_ = device;
  s->chunk_ = stager_chunk_bytes(staging_budget);
  UCP_STAGER_CHECK(cudaSetDevice(device), "cudaSetDevice");
  UCP_STAGER_CHECK(cudaStreamCreateWithFlags(&s->stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  for (int i = 0; i < 2; ++i) {
    UCP_STAGER_CHECK(cudaHostAlloc(&s->pinned_[i], s->chunk_, cudaHostAllocDefault), "cudaHostAlloc");
    UCP_STAGER_CHECK(cudaMalloc(&s->staged_[i], s->chunk_), "cudaMalloc");
    UCP_STAGER_CHECK(cudaEventCreateWithFlags(&s->copied_[i], cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  return s;
}

DeviceStager::~DeviceStager() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);  // nothing may still use the buffers
  for (int i = 0; i < 2; ++i) {
    if (copied_[i] != nullptr) cudaEventDestroy(copied_[i]);
    if (staged_[i] != nullptr) cudaFree(staged_[i]);
    if (pinned_[i] != nullptr) cudaFreeHost(pinned_[i]);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status DeviceStager::upload(const void* src, base::DType src_dtype, std::uint64_t n, void* dst, base::DType dst_dtype) {
  if (!cuda_can_convert(src_dtype, dst_dtype)) {
    return base::invalid_argument("DeviceStager: no device conversion " + std::string(base::dtype_name(src_dtype)) +
                                  " -> " + std::string(base::dtype_name(dst_dtype)));
  }
  UCP_STAGER_CHECK(cudaSetDevice(device_), "cudaSetDevice");
  const std::uint64_t in_size = base::dtype_size(src_dtype), out_size = base::dtype_size(dst_dtype);
  const std::uint64_t per_chunk = chunk_ / in_size;  // chunk_ is a multiple of 256, so > 0
  const auto* in = static_cast<const std::byte*>(src);
  auto* out = static_cast<std::byte*>(dst);
  int slot = 0;
  for (std::uint64_t done = 0; done < n; done += per_chunk, slot ^= 1) {
    const std::uint64_t m = std::min(per_chunk, n - done);
    // The pinned chunk is free once its previous H2D copy has finished.
    if (pending_[slot]) UCP_STAGER_CHECK(cudaEventSynchronize(copied_[slot]), "cudaEventSynchronize");
    pending_[slot] = false;
    std::memcpy(pinned_[slot], in + done * in_size, m * in_size);
    // Same dtype: straight into the destination; otherwise into the device staging, then cast.
    void* target = src_dtype == dst_dtype ? static_cast<void*>(out + done * out_size) : staged_[slot];
    UCP_STAGER_CHECK(cudaMemcpyAsync(target, pinned_[slot], m * in_size, cudaMemcpyHostToDevice, stream_),
                     "cudaMemcpyAsync");
    UCP_STAGER_CHECK(cudaEventRecord(copied_[slot], stream_), "cudaEventRecord");
    pending_[slot] = true;
    // staged_[slot] is reused two chunks later, behind this cast in stream order.
    if (src_dtype != dst_dtype) {
      UCP_RETURN_IF_ERROR(cuda_convert(out + done * out_size, dst_dtype, staged_[slot], src_dtype, m, stream_));
    }
  }
  return Status();
}

Status DeviceStager::download(void* dst, const void* src, std::uint64_t bytes) {
  UCP_STAGER_CHECK(cudaSetDevice(device_), "cudaSetDevice");
  auto* out = static_cast<std::byte*>(dst);
  const auto* in = static_cast<const std::byte*>(src);
  // Chunk k lands in pinned_[k % 2]; while it is in flight, chunk k-1 is copied out on the host.
  std::uint64_t prev_offset = 0, prev_len = 0;
  int slot = 0;
  for (std::uint64_t done = 0; done < bytes; done += chunk_, slot ^= 1) {
    const std::uint64_t m = std::min(chunk_, bytes - done);
    if (pending_[slot]) UCP_STAGER_CHECK(cudaEventSynchronize(copied_[slot]), "cudaEventSynchronize");
    pending_[slot] = false;
    UCP_STAGER_CHECK(cudaMemcpyAsync(pinned_[slot], in + done, m, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
    UCP_STAGER_CHECK(cudaEventRecord(copied_[slot], stream_), "cudaEventRecord");
    pending_[slot] = true;
    if (prev_len > 0) {
      const int other = slot ^ 1;
      UCP_STAGER_CHECK(cudaEventSynchronize(copied_[other]), "cudaEventSynchronize");
      pending_[other] = false;
      std::memcpy(out + prev_offset, pinned_[other], prev_len);
    }
    prev_offset = done;
    prev_len = m;
  }
  if (prev_len > 0) {
    const int last = slot ^ 1;
    UCP_STAGER_CHECK(cudaEventSynchronize(copied_[last]), "cudaEventSynchronize");
    pending_[last] = false;
    std::memcpy(out + prev_offset, pinned_[last], prev_len);
  }
  return Status();
}

Status DeviceStager::synchronize() {
  UCP_STAGER_CHECK(cudaSetDevice(device_), "cudaSetDevice");
  UCP_STAGER_CHECK(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  pending_[0] = pending_[1] = false;
  return Status();
}

}  // namespace ucp::exec
