// The one pipeline of every conversion command. A command reads its source (collectively, ending
// in the "discover"/"metadata"/"source" agreements) and plans its target; from there on every
// command goes through the same phases, here, each ending in one agreement so that a failure on
// any rank is reported by all:
//   plan      every rank built its plan, and every rank holds the same one (digest)
//             (--dry-run stops here: rank 0 prints the source and the plan)
//   prepare   rank 0 takes the lock on OUT and makes the temporary folder beside OUT, or picks
//             the folder of an interrupted run of the same command (exec/output_dir.h,
//             exec/journal.h); every rank reads its journal and they agree how far it got
//   create, transfer, finalize
//             the executor of the plan's kind: file plan (exec/file_plan_executor) or one
//             parallel-HDF5 file (exec/hdf5_executor)
//   extras    rank 0 writes the planned small files into the temporary folder
//   commit    rank 0 renames it to OUT, then writes the small files planned beside OUT
// On any failure the temporary folder is removed and OUT is left as it was. When SIGTERM or SIGINT
// stops the run at a round boundary (exec/interrupt.h) the folder and its journal are kept, the
// lock is released, and the command exits with code 10: the same command resumes it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/hdf5_plan.h"

namespace ucp::exec {

struct RunOptions {
  std::string command;  ///< "to-fp32", ... (message prefix)
  std::string out;
  bool overwrite = false;
  bool dry_run = false;
  bool progress = false;
  bool timings = false;
  bool restart = false;  ///< --restart: never resume an interrupted run's folder.
  bool sync = true;      ///< !--no-sync: durable journal and commit.
  bool quiet = false;    ///< No closing "wrote ..." line (callers that report themselves: the Python module).
};

/// What a command planned: the plan of its target and what to say about it.
struct PlannedConversion {
  std::variant<plan::FilePlan, plan::Hdf5Plan> plan;
  std::string source_description;  ///< First line of --dry-run.
  /// Rank 0's closing line after success, given the bytes written ("wrote ... to OUT").
  std::function<std::string(std::uint64_t bytes_written)> done_message;
};

/// Collective. Runs `planned` (each rank's own; an error on any rank stops every rank at "plan").
base::Status run_conversion(comm::Communicator& comm, const RunOptions& options,
                            const base::Result<PlannedConversion>& planned, PhaseTimer& timer);

}  // namespace ucp::exec
