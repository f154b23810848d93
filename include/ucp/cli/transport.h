// --transport auto|mpi|nccl for the conversion commands: swaps the process communicator for the
// NCCL one when chosen, and says which transport runs and why (rank 0's header line).
#pragma once

#include <memory>
#include <string>

#include "ucp/base/status.h"
#include "ucp/cli/conversion_options.h"
#include "ucp/comm/communicator.h"

namespace ucp::cli {

/// Collective over `comm`. Decides the transport (comm::agree_on_transport: the same on every
/// rank), replaces `comm` by an NCCL communicator wrapping it when NCCL is chosen, and returns the
/// header line, e.g. "transport: NCCL 2.28.9 (auto: every rank has a GPU)" or
/// "transport: MPI (auto: no CUDA device on ranks 0-3)". On error (`--transport nccl` where it is
/// not possible, NCCL initialisation failing) every rank gets the same error and `comm` is
/// unchanged. The NCCL staging budget comes from --max-memory (see nccl_staging_budget).
base::Result<std::string> open_transport(std::unique_ptr<comm::Communicator>& comm, const ConversionOptions& options);

}  // namespace ucp::cli
