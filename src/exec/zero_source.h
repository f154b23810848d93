// Collective reading of a DeepSpeed checkpoint's metadata: each rank parses the pickles of its
// share of the files, the results are all-gathered, and every rank assembles the same
// ZeroCheckpoint. Ends in an agreement, so a corrupt file reported by one rank fails all ranks.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::exec {

/// Collective over `comm`: all ranks call with the same arguments.
base::Result<format::ZeroCheckpoint> read_zero_checkpoint(comm::Communicator& comm, const std::string& path,
                                                          const std::string& tag, PhaseTimer& timer);

/// "DeepSpeed <wrapper> checkpoint <tag dir> (ZeRO stage S, dp N)": how --dry-run names its source.
std::string describe_checkpoint(const format::ZeroCheckpoint& ckpt);

}  // namespace ucp::exec
