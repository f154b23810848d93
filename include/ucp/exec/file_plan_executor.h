// Runs a file plan (plan/file_plan.h) into a prepared output folder. Collective over `comm`: every
// rank calls with the same plan. The pipeline (exec/pipeline.h) calls it and commits.
//
// Phases (each ends in comm::agree, so a failure anywhere is reported by all ranks):
//   create    file owners create and pre-allocate their output files in the temporary folder
//             and write the bytes known up front (safetensors header, torch pickle records);
//             readers open their source files
//   transfer  per round: readers pread + convert into a send buffer, all-to-all-v, owners pwrite
//   finalize  torch files: CRCs combined per record, zip headers and directory written
//
// With a journal (exec/journal.h): each rank records "created", every round (after fdatasync of
// the files it wrote in it, with the CRC pieces it computed) and "finalized"; a resumed run opens
// the files it created, skips the rounds every rank finished and takes their CRC pieces from the
// journal. At every round boundary the ranks agree whether one was asked to stop (SIGTERM,
// SIGINT: exec/interrupt.h) and then all stop with Interrupted.
#pragma once

#include <functional>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/journal.h"
#include "ucp/exec/output_dir.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

struct ExecuteOptions {
  bool progress = false;  ///< Rank 0 prints bytes done, rate and ETA to stderr after each round.
  bool sync = true;       ///< fdatasync before each journal record, fsync of every file at finalize.
  RankJournal* journal = nullptr;  ///< This rank's journal (file plans), or none.
  ResumePoint resume;     ///< What an earlier run finished (every rank agreed).
  /// Called after each round's transfer on every rank (recording it), its status joining the
  /// round's agreement. Set by execute_file_plan.
  std::function<base::Status(std::size_t round)> after_round;
};

/// Pure. How many threads one rank creates its files and streams its local runs on: its share of
/// the CPUs it may run on (a rank bound to one core gets 1), at most kMaxStreamLanes. Both are
/// CPU-bound kernel work, so a rank with idle cores writes faster on several threads.
int stream_lanes(int cpus_available, int ranks_on_host);

/// Shared by the executors: runs plan.rounds in order from options.resume.rounds, `transfer` then
/// options.after_round on every rank for each, every round ending in the agreement "transfer";
/// rank 0 prints bytes done, rate and ETA when options.progress. Stops at the first failed round,
/// and at a round boundary where any rank was asked to stop (Interrupted on every rank).
base::Status run_transfer_rounds(comm::Communicator& comm, const plan::FilePlan& plan, const ExecuteOptions& options,
                                 const std::function<base::Status(const std::vector<plan::Transfer>&)>& transfer);

/// Writes the tensor data files of `plan` into `out` (already prepared): create, transfer rounds,
/// finalize. The same status on every rank; the caller commits or abandons `out`.
base::Status execute_file_plan(comm::Communicator& comm, const plan::FilePlan& plan, OutputDir& out,
                               const ExecuteOptions& options, PhaseTimer& timer);

}  // namespace ucp::exec
