// Internal to src/comm: turning an MPI return code into a Status. With MPI_ERRORS_RETURN set on our
// communicators, every MPI call goes through UCP_MPI_CHECK.
#pragma once

#include <string_view>

// The C API only: the deprecated C++ bindings drag in headers that do not build warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "ucp/base/status.h"

namespace ucp::comm::internal {

/// kUnavailable "MPI_Alltoallv failed: <MPI_Error_string text>"; `call_text` is the stringified
/// call, of which only the function name (up to '(') is kept.
base::Status mpi_error(int rc, std::string_view call_text);

}  // namespace ucp::comm::internal

/// Returns a kUnavailable Status from the enclosing function if the MPI call fails.
#define UCP_MPI_CHECK(call)                                                   \
  do {                                                                        \
    const int ucp_mpi_rc_ = (call);                                           \
    if (ucp_mpi_rc_ != MPI_SUCCESS) {                                         \
      return ::ucp::comm::internal::mpi_error(ucp_mpi_rc_, #call);            \
    }                                                                         \
  } while (false)
