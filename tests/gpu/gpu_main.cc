// gtest main for the GPU tests (tests/gpu/*_gpu_test.cc), run under mpirun. Every rank needs a
// CUDA device of its own (device = node-local rank); when any rank lacks one, every rank prints
// why and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE), never as passed.
#include <cuda_runtime_api.h>

#include "testutil/mpi_gtest.h"

namespace {

constexpr int kSkipped = 77;

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "MPI_Init_thread failed\n");
    return 1;
  }
  int rank = 0, local_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_free(&local);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  int ready = local_rank < devices ? 1 : 0, all_ready = 0;
  MPI_Allreduce(&ready, &all_ready, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_ready) {
    if (rank == 0) std::printf("SKIPPED: no CUDA device (every rank needs one of its own)\n");
    if (!ready) std::printf("[rank %d] local rank %d, %d CUDA device(s) visible\n", rank, local_rank, devices);
    std::fflush(stdout);
    MPI_Finalize();
    return kSkipped;
  }
  if (cudaSetDevice(local_rank) != cudaSuccess) {
    std::fprintf(stderr, "[rank %d] cudaSetDevice(%d) failed\n", rank, local_rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  const int code = ucp::testutil::run_tests_on_every_rank(&argc, argv);
  MPI_Finalize();
  return code;
}
