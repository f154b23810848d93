// Runs a file plan (plan/file_plan.h) into a prepared output folder. Collective over `comm`: every
// rank calls with the same plan. The pipeline (exec/pipeline.h) calls it and commits.
//
// Phases (each ends in comm::agree, so a failure anywhere is reported by all ranks):
//   create    file owners create and pre-allocate their output files in the temporary folder
//             and write the bytes known up front (safetensors header, torch pickle records);
//             readers open their source files
//   transfer  per round: readers pread + convert into a send buffer, all-to-all-v, owners pwrite
//   finalize  torch files: CRCs combined per record, zip headers and directory written
#pragma once

#include <functional>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/output_dir.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

struct ExecuteOptions {
  bool progress = false;  ///< Rank 0 prints bytes done, rate and ETA to stderr after each round.
};

/// Pure. How many threads one rank creates its files and streams its local runs on: its share of
/// the CPUs it may run on (a rank bound to one core gets 1), at most kMaxStreamLanes. Both are
/// CPU-bound kernel work, so a rank with idle cores writes faster on several threads.
int stream_lanes(int cpus_available, int ranks_on_host);

/// Shared by the executors: runs plan.rounds in order, `transfer` on every rank for each, every
/// round ending in the agreement "transfer"; rank 0 prints bytes done, rate and ETA when
/// options.progress. Stops at the first failed round.
base::Status run_transfer_rounds(comm::Communicator& comm, const plan::FilePlan& plan, const ExecuteOptions& options,
                                 const std::function<base::Status(const std::vector<plan::Transfer>&)>& transfer);

/// Writes the tensor data files of `plan` into `out` (already prepared): create, transfer rounds,
/// finalize. The same status on every rank; the caller commits or abandons `out`.
base::Status execute_file_plan(comm::Communicator& comm, const plan::FilePlan& plan, OutputDir& out,
                               const ExecuteOptions& options, PhaseTimer& timer);

}  // namespace ucp::exec
