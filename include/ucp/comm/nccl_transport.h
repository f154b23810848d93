// The CUDA/NCCL side of comm. Built only when CMake finds CUDA and NCCL (target ucp_nccl, which
// defines UCP_HAVE_NCCL=1 for everything linking it), so CI compiles the GPU path even without a
// GPU. For now it only reports what was built and what the machine has.
#pragma once

#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL

#include <string>

namespace ucp::comm {

/// Always true: exists so callers can print "NCCL: built" without a preprocessor check of their own.
bool nccl_built();
/// The NCCL library's runtime version, "2.28.9" (from ncclGetVersion); "unknown" if it fails.
std::string nccl_version_string();
/// Number of visible CUDA devices; 0 when there is none, no driver, or any CUDA error. Never aborts.
int cuda_device_count();

}  // namespace ucp::comm

#endif  // UCP_HAVE_NCCL
