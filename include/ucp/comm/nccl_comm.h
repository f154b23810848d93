// The NCCL transport: a Communicator whose all-to-all-v moves the bytes through this rank's GPU
// (pinned host staging -> H2D -> grouped ncclSend/ncclRecv -> D2H), so the planner and executor
// use it exactly like MpiComm. Small control collectives go over the bootstrap communicator (MPI).
// Built only with CUDA + NCCL (target ucp_nccl defines UCP_HAVE_NCCL=1).
#pragma once

#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL

#include <cstdint>
#include <memory>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::comm {

struct NcclCommOptions {
  /// Device bytes for the all-to-all staging (send + receive together; pinned host memory of the
  /// same size). Exchanges larger than this run as several grouped rounds. Every rank must pass the
  /// same value (it fixes the piece size, see nccl_exchange_plan.h); make_nccl_comm takes the
  /// minimum over ranks to be safe.
  std::uint64_t staging_bytes = 256u << 20;
  /// Seconds one NCCL step (init, one exchange round, finalize) may take before this rank calls
  /// ncclCommAbort and returns kUnavailable. Default: env UCP_NCCL_TIMEOUT_S, else 600.
  double timeout_s = 600;
  /// CUDA device to use; -1: the node-local rank (node_placement()).
  int device = -1;
  /// Tests only: send a rank's message to itself through NCCL too (normally a host copy), so a
  /// one-GPU machine runs the whole device path. Every rank must pass the same value.
  bool self_through_nccl = false;
};

/// UCP_NCCL_TIMEOUT_S if set to a positive number, else 600.
double nccl_timeout_from_env();

/// Collective over `bootstrap`. Selects the device, broadcasts an ncclUniqueId from rank 0 over
/// `bootstrap`, and initialises a non-blocking NCCL communicator (polled, with the timeout). On
/// success the returned communicator owns `bootstrap` (moved from); on failure `bootstrap` is left
/// untouched and usable, and every rank returns an error (agreed over `bootstrap`).
base::Result<std::unique_ptr<Communicator>> make_nccl_comm(std::unique_ptr<Communicator>& bootstrap,
                                                            const NcclCommOptions& options);

}  // namespace ucp::comm

#endif  // UCP_HAVE_NCCL
