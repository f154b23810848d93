// node_placement and agree_on_transport over real MPI at 1..4 ranks (all on this host): local
// ranks must be 0..n-1 in rank order, and the transport verdict identical on every rank.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ucp/comm/mpi_comm.h"
#include "ucp/comm/transport.h"

namespace ucp::comm {
namespace {

TEST(TransportMpi, EveryRankOfThisHostGetsItsOwnLocalRank) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  auto placement = node_placement(*comm);
  ASSERT_TRUE(placement.ok()) << placement.status().to_string();
  EXPECT_EQ(placement->local_rank, comm->rank());  // mpirun runs every rank on this machine
  EXPECT_EQ(placement->local_size, comm->size());
}

TEST(TransportMpi, VerdictIsTheSameEverywhere) {
  auto comm = make_mpi_world();
  ASSERT_NE(comm, nullptr);
  auto placement = node_placement(*comm);
  ASSERT_TRUE(placement.ok());
  // Pretend this host has 2 GPUs: ranks 2 and 3 (at 3-4 ranks) have none of their own.
  auto choice = agree_on_transport(*comm, Transport::kAuto, true, 2, *placement);
  ASSERT_TRUE(choice.ok()) << choice.status().to_string();
  if (comm->size() <= 2) {
    EXPECT_EQ(choice->transport, Transport::kNccl);
    EXPECT_EQ(choice->reason, "auto: every rank has a GPU");
  } else {
    EXPECT_EQ(choice->transport, Transport::kMpi);
    EXPECT_THAT(choice->reason, testing::HasSubstr(comm->size() == 3 ? "on rank 2 (" : "on ranks 2-3 ("));
  }
  // Only rank 1 lacks a device: everyone must hear about rank 1, and 'nccl' fails everywhere.
  const int devices = comm->rank() == 1 ? 0 : 8;
  auto forced = agree_on_transport(*comm, Transport::kNccl, true, devices, *placement);
  if (comm->size() == 1) {
    EXPECT_TRUE(forced.ok());
  } else {
    ASSERT_FALSE(forced.ok());
    EXPECT_EQ(forced.status().code(), base::StatusCode::kUnavailable);
    EXPECT_EQ(forced.status().message(), "--transport nccl: no CUDA device on rank 1; use --transport mpi or auto");
  }
  // The reason text is what rank 0 prints: compare it across ranks byte for byte.
  const std::string mine = choice->reason;
  auto all = comm->all_gather(std::span<const std::byte>(reinterpret_cast<const std::byte*>(mine.data()), mine.size()));
  ASSERT_TRUE(all.ok());
  for (const auto& other : *all) EXPECT_EQ(std::string(reinterpret_cast<const char*>(other.data()), other.size()), mine);
}

}  // namespace
}  // namespace ucp::comm
