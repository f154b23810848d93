// Runs an HDF5 plan (plan/hdf5_plan.h): every rank writes one HDF5 file at once through
// parallel HDF5. Collective over `comm`, which must span MPI_COMM_WORLD (parallel HDF5 needs the
// MPI communicator itself; the world communicator is the one every command runs on).
//
// Phases (each ends in comm::agree, as in exec/file_plan_executor):
//   create    all ranks create OUT.tmp/model.h5, its groups, every dataset (contiguous, allocated,
//             never filled), the tied-name hard links and the attributes; readers open sources
//   transfer  per round: readers pread + convert their runs into one buffer, then every rank calls
//             a collective H5Dwrite for each dataset the round touches, in the same order, with
//             its own runs as a hyperslab selection (an empty one when it has none) — the raw data
//             goes through HDF5's MPI-IO collective write path, nothing is exchanged beforehand
//   finalize  collective close (HDF5 flushes its metadata)
#pragma once

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/file_plan_executor.h"
#include "ucp/exec/output_dir.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/hdf5_plan.h"

namespace ucp::exec {

/// True when this binary was built with parallel HDF5 (UCP_HAVE_HDF5).
bool hdf5_output_available();
/// "parallel HDF5 1.10.8", or why it is unavailable.
std::string hdf5_output_description();

/// Writes `plan`'s HDF5 file into `out` (already prepared); the caller commits or abandons `out`.
/// Unimplemented (on every rank) without HDF5.
base::Status execute_hdf5_plan(comm::Communicator& comm, const plan::Hdf5Plan& plan, OutputDir& out,
                               const ExecuteOptions& options, PhaseTimer& timer);

}  // namespace ucp::exec
