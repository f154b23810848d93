// gtest main for the MPI tests (tests/mpi/*_mpi_test.cc), run under mpirun at 1..4 ranks (see
// mpi_gtest.h for how ranks report).
#include "testutil/mpi_gtest.h"

int main(int argc, char** argv) {
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "MPI_Init_thread failed\n");
    return 1;
  }
  const int code = ucp::testutil::run_tests_on_every_rank(&argc, argv);
  MPI_Finalize();
  return code;
}
