// What the NCCL build found at run time: library version and device count. Must work on machines
// without a GPU or driver (CI), so every CUDA error means "no devices".
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "ucp/comm/nccl_transport.h"

namespace ucp::comm {

bool nccl_built() { return true; }

std::string nccl_version_string() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess || code <= 0) return "unknown";
  // NCCL <= 2.8 encoded X*1000+Y*100+Z; later versions X*10000+Y*100+Z (see NCCL_VERSION in nccl.h).
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? (code % 10000) / 100 : (code % 1000) / 100;
  const int patch = code % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // not a sticky error: clear it so a later cudaGetLastError() does not see it
    return 0;
  }
  return count < 0 ? 0 : count;
}

}  // namespace ucp::comm
