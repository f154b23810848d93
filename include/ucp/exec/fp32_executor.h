// Runs a to-fp32 plan. Collective over `comm`: every rank calls with the same plan.
//
// Phases (each ends in comm::agree, so a failure anywhere is reported by all ranks):
//   create    file owners create and pre-allocate their output files in the temporary folder
//             and write the bytes known up front (safetensors header, torch pickle records);
//             readers open their source files
//   transfer  per round: readers pread + convert into a send buffer, all-to-all-v, owners pwrite
//   finalize  torch files: CRCs combined per record, zip headers and directory written
//   commit    rank 0 writes the HF index, then moves the folder into place
#pragma once

#include <functional>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/output_dir.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/fp32_plan.h"

namespace ucp::exec {

struct ExecuteOptions {
  bool progress = false;  ///< Rank 0 prints bytes done, rate and ETA to stderr after each round.
  /// Called on every rank after finalize, before the commit, to write files outside the plan into
  /// the temporary folder; its result is agreed on (phase "extras").
  std::function<base::Status()> before_commit;
};

/// Pure. How many threads one rank creates its files and streams its local runs on: its share of
/// the CPUs it may run on (a rank bound to one core gets 1), at most kMaxStreamLanes. Both are
/// CPU-bound kernel work, so a rank with idle cores writes faster on several threads.
int stream_lanes(int cpus_available, int ranks_on_host);

/// Shared by the executors: runs plan.rounds in order, `transfer` on every rank for each, every
/// round ending in the agreement "transfer"; rank 0 prints bytes done, rate and ETA when
/// options.progress. Stops at the first failed round.
base::Status run_transfer_rounds(comm::Communicator& comm, const plan::Fp32Plan& plan, const ExecuteOptions& options,
                                 const std::function<base::Status(const std::vector<plan::Transfer>&)>& transfer);

/// Shared by the executors, after their outputs are closed: the before_commit extras (agreed as
/// "extras"), then the commit of `out` when everything succeeded, else its removal.
base::Status commit_or_abandon(comm::Communicator& comm, base::Status status, const ExecuteOptions& options,
                               OutputDir& out, PhaseTimer& timer);

/// Executes `plan` into `out` (already prepared) and commits it. On failure the temporary folder
/// is removed and OUT is left untouched.
base::Status execute_fp32_plan(comm::Communicator& comm, const plan::Fp32Plan& plan, OutputDir& out,
                               const ExecuteOptions& options, PhaseTimer& timer);

}  // namespace ucp::exec
