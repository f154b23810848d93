// gtest under mpirun, shared by the MPI and GPU test mains: rank 0 prints gtest's usual report,
// the other ranks only their failures tagged "[rank N]", and every rank returns the same code
// (non-zero if a test failed on any rank). Header-only: ucp_testutil does not link MPI.
#pragma once

#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <gtest/gtest.h>

#include <cstdio>

namespace ucp::testutil {

class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.message());
    std::fflush(stderr);
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
      std::fflush(stderr);
    }
  }

 private:
  int rank_;
};

/// After MPI_Init: initialises gtest, runs every test on every rank and returns the agreed exit
/// code. The caller calls MPI_Finalize.
inline int run_tests_on_every_rank(int* argc, char** argv) {
  testing::InitGoogleTest(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int mine = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any = mine;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any && !mine) std::fprintf(stderr, "Tests failed on other ranks (see the [rank N] lines above).\n");
  return any;
}

}  // namespace ucp::testutil
