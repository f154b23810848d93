// agree() over MPI at 1..4 ranks: every rank must reach the same verdict. Expected messages are
// written out per world size.
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <vector>

#include "ucp/comm/communicator.h"
#include "ucp/comm/mpi_comm.h"

namespace ucp::comm {
namespace {

using base::Status;
using base::StatusCode;

TEST(AgreeMpi, AllOk) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  Agreement a = agree(*comm, "read", Status());
  EXPECT_TRUE(a.status.ok()) << a.status.to_string();
  EXPECT_EQ(a.failed_ranks, 0);
}

TEST(AgreeMpi, OddRanksFailWithTheSameMessage) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  Agreement a = agree(*comm, "write", me % 2 == 1 ? base::data_loss("disk said no") : Status());
  switch (n) {
    case 1:
      EXPECT_TRUE(a.status.ok());
      break;
    case 2:
    case 3:
      EXPECT_EQ(a.status.message(),
                "step 'write' failed on 1/" + std::to_string(n) + " ranks: rank 1: DataLoss: disk said no");
      break;
    case 4:
      EXPECT_EQ(a.status.message(), "step 'write' failed on 2/4 ranks: ranks 1,3: DataLoss: disk said no");
      break;
    default:
      GTEST_SKIP() << "no expectation written for " << n << " ranks";
  }
  EXPECT_EQ(a.failed_ranks, n / 2);
  if (n > 1) {
    EXPECT_EQ(a.status.code(), StatusCode::kDataLoss);
  }
}

TEST(AgreeMpi, DifferentFailuresAreGroupedAndTheFirstCodeWins) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  Status local;
  if (me == 1) local = base::data_loss("'mp_rank_01.pt': bad CRC");
  if (me >= 2) local = base::not_found("no such file");
  Agreement a = agree(*comm, "read", local);
  switch (n) {
    case 1:
      EXPECT_TRUE(a.status.ok());
      EXPECT_EQ(a.failed_ranks, 0);
      break;
    case 2:
      EXPECT_EQ(a.status.message(), "step 'read' failed on 1/2 ranks: rank 1: DataLoss: 'mp_rank_01.pt': bad CRC");
      EXPECT_EQ(a.failed_ranks, 1);
      break;
    case 3:
      EXPECT_EQ(a.status.message(),
                "step 'read' failed on 2/3 ranks: rank 1: DataLoss: 'mp_rank_01.pt': bad CRC; "
                "rank 2: NotFound: no such file");
      EXPECT_EQ(a.failed_ranks, 2);
      break;
    case 4:
      EXPECT_EQ(a.status.message(),
                "step 'read' failed on 3/4 ranks: rank 1: DataLoss: 'mp_rank_01.pt': bad CRC; "
                "ranks 2-3: NotFound: no such file");
      EXPECT_EQ(a.failed_ranks, 3);
      break;
    default:
      GTEST_SKIP() << "no expectation written for " << n << " ranks";
  }
  if (n > 1) {
    EXPECT_EQ(a.status.code(), StatusCode::kDataLoss);
  }
}

TEST(AgreeMpi, EveryRankFailsTheSameWay) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size();
  Agreement a = agree(*comm, "plan", base::failed_precondition("world size 3 does not divide 8"));
  const std::string ranks = n == 1 ? "rank 0" : "ranks 0-" + std::to_string(n - 1);
  EXPECT_EQ(a.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.status.message(), "step 'plan' failed on " + std::to_string(n) + "/" + std::to_string(n) + " ranks: " +
                                    ranks + ": FailedPrecondition: world size 3 does not divide 8");
  EXPECT_EQ(a.failed_ranks, n);
}

TEST(AgreeMpi, LongMessagesAreTruncatedPerRank) {
  // A small chunk size also runs the agreement through the chunked all_gather path.
  for (std::uint64_t chunk : {std::uint64_t{INT_MAX}, std::uint64_t{100}}) {
    auto comm = make_mpi_world(MpiCommOptions{chunk});
    ASSERT_NE(comm, nullptr);
    const int n = comm->size(), me = comm->rank();
    Agreement a = agree(*comm, "x", base::internal_error(std::string(3000, static_cast<char>('a' + me))));
    std::string expected = "step 'x' failed on " + std::to_string(n) + "/" + std::to_string(n) + " ranks: ";
    for (int r = 0; r < n; ++r) {
      if (r > 0) expected += "; ";
      expected += "rank " + std::to_string(r) + ": Internal: " + std::string(988, static_cast<char>('a' + r)) +
                  " [truncated]";
    }
    EXPECT_EQ(a.status.message(), expected) << "chunk " << chunk;
    EXPECT_EQ(a.failed_ranks, n);
  }
}

}  // namespace
}  // namespace ucp::comm
