// The process-wide communicator: MPI under a launcher, SelfComm for a process started on its own.
#include <cstdlib>
#include <memory>

#include "mpi_check.h"
#include "ucp/comm/communicator.h"
#include "ucp/comm/mpi_comm.h"
#include "ucp/comm/self_comm.h"

namespace ucp::comm {

std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  // Started on its own, the process is the only rank, and MPI would add nothing but Open MPI's
  // singleton start-up, which spawns an orted (0.45 s here, a tenth of a 0.5B to-universal).
  if (!initialized && !launched_by_mpi_launcher()) return std::make_unique<SelfComm>();
  if (!initialized) {
    // A rank waiting in a collective spins by default. Our ranks wait while others do file I/O,
    // whose kernel work needs the very cores the spinning takes (2 ranks on 2 cores: to-fp32 ran
    // 5.2 s spinning, 2.7 s yielding). The user's own setting (environment or mpirun --mca) wins.
    ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
    // FUNNELED: only the main thread calls MPI; worker threads only read and write files.
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      return std::make_unique<SelfComm>();
    }
  }
  if (auto comm = make_mpi_world()) return comm;
  return std::make_unique<SelfComm>();
}

namespace {

// Initialises MPI as a singleton if nothing has: for the one-rank run that started without it and
// then needs MPI_COMM_WORLD anyway (parallel HDF5 opens its file through MPI-IO).
base::Status initialize_mpi_alone() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return {};
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    return base::unavailable("MPI_Init_thread failed (a one-rank run needs MPI for parallel HDF5)");
  }
  return {};
}

}  // namespace

base::Result<const void*> world_mpi_comm_handle(int size, int rank) {
  if (size == 1) UCP_RETURN_IF_ERROR(initialize_mpi_alone());
  int initialized = 0, world = 0, me = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return base::failed_precondition("MPI is not initialised");
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (world != size || me != rank) return base::internal_error("the communicator is not MPI_COMM_WORLD");
  static const MPI_Comm kWorld = MPI_COMM_WORLD;
  return static_cast<const void*>(&kWorld);
}

std::string mpi_library_version() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string line(version, static_cast<std::size_t>(len));
  if (auto nl = line.find_first_of(",\n"); nl != std::string::npos) line.resize(nl);
  return line;
}

void finalize_world() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

}  // namespace ucp::comm
