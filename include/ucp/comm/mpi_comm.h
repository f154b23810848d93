// Communicator over an MPI communicator (a duplicate of MPI_COMM_WORLD by default), with
// MPI_ERRORS_RETURN so failures come back as Status. Message sizes above INT_MAX bytes are split
// (MPI counts are int) into chunks.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>

#include "ucp/comm/communicator.h"

namespace ucp::comm {

struct MpiCommOptions {
  /// Largest number of bytes handed to one MPI call (counts and displacements are int). Lowering it
  /// only exists so tests can exercise the chunked paths with small buffers; every rank must use
  /// the same value.
  std::uint64_t max_chunk_bytes = INT_MAX;
};

/// Wraps MPI_COMM_WORLD (duplicated). Requires MPI to be initialised (make_world_communicator does
/// it); returns nullptr if it is not (or is already finalised) or if MPI_Comm_dup fails.
///
/// Argument checking in all_to_all_v: spans of the wrong length, ranges outside `send`/`recv`, or
/// counts that disagree pairwise (r sends k bytes to d, d expects j != k from r) are bugs in the
/// caller's plan. They are detected collectively before any payload moves (one small all-to-all of
/// counts and one all-reduce), so every rank returns kInternal instead of hanging or aborting.
std::unique_ptr<Communicator> make_mpi_world(const MpiCommOptions& options = {});
/// True if this binary was built with MPI support.
bool mpi_available();
/// True if the process looks launched by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMIX_RANK, SLURM_PROCID...).
bool launched_by_mpi_launcher();

}  // namespace ucp::comm
