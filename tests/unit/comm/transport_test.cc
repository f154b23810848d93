// The --transport decision and the host placement, on CPU: the rules, the exact reasons rank 0
// prints, and the errors every rank returns when NCCL is requested but impossible.
#include "ucp/comm/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "testutil/status_matchers.h"
#include "ucp/comm/self_comm.h"

namespace ucp::comm {
namespace {

using base::StatusCode;
using testing::HasSubstr;
using testutil::StatusIs;

TEST(Transport, Names) {
  EXPECT_EQ(transport_from_name("auto"), Transport::kAuto);
  EXPECT_EQ(transport_from_name("mpi"), Transport::kMpi);
  EXPECT_EQ(transport_from_name("nccl"), Transport::kNccl);
  EXPECT_EQ(transport_from_name("NCCL"), std::nullopt);
  EXPECT_EQ(transport_from_name(""), std::nullopt);
  for (Transport t : {Transport::kAuto, Transport::kMpi, Transport::kNccl})
    EXPECT_EQ(transport_from_name(transport_name(t)), t);
}

// Ranks on hosts of `devices` GPUs each, `per_host` ranks per host, in rank order.
std::vector<RankGpuInfo> cluster(int ranks, int per_host, std::uint32_t devices) {
  std::vector<RankGpuInfo> out;
  for (int r = 0; r < ranks; ++r)
    out.push_back({devices, static_cast<std::uint32_t>(r % per_host), static_cast<std::uint32_t>(per_host)});
  return out;
}

TEST(ChooseTransport, MpiWhenAsked) {
  auto c = choose_transport(Transport::kMpi, true, cluster(4, 4, 8));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, Transport::kMpi);
  EXPECT_EQ(c->reason, "requested");
}

TEST(ChooseTransport, AutoPicksNcclWhenEveryRankHasAGpu) {
  auto c = choose_transport(Transport::kAuto, true, cluster(16, 8, 8));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, Transport::kNccl);
  EXPECT_EQ(c->reason, "auto: every rank has a GPU");
  auto n = choose_transport(Transport::kNccl, true, cluster(16, 8, 8));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->transport, Transport::kNccl);
  EXPECT_EQ(n->reason, "requested");
}

TEST(ChooseTransport, AutoFallsBackToMpiWithoutNccl) {
  auto c = choose_transport(Transport::kAuto, false, cluster(2, 2, 8));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, Transport::kMpi);
  EXPECT_EQ(c->reason, "auto: NCCL not built in");
  EXPECT_THAT(choose_transport(Transport::kNccl, false, cluster(2, 2, 8)),
              StatusIs(StatusCode::kUnavailable, HasSubstr("built without NCCL")));
}

TEST(ChooseTransport, AutoFallsBackToMpiWhenARankHasNoDevice) {
  auto c = choose_transport(Transport::kAuto, true, cluster(4, 4, 0));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, Transport::kMpi);
  EXPECT_EQ(c->reason, "auto: no CUDA device on ranks 0-3");

  std::vector<RankGpuInfo> mixed = cluster(6, 2, 2);
  mixed[2].devices = 0;
  mixed[5].devices = 0;
  auto m = choose_transport(Transport::kAuto, true, mixed);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->reason, "auto: no CUDA device on ranks 2,5");
  EXPECT_THAT(choose_transport(Transport::kNccl, true, mixed),
              StatusIs(StatusCode::kUnavailable,
                       testing::Eq("--transport nccl: no CUDA device on ranks 2,5; use --transport mpi or auto")));
}

TEST(ChooseTransport, MoreRanksThanDevicesOnAHostIsNotEnough) {
  // 8 ranks per host, 4 GPUs each: local ranks 4-7 of each host have none of their own.
  auto c = choose_transport(Transport::kAuto, true, cluster(16, 8, 4));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, Transport::kMpi);
  EXPECT_EQ(c->reason,
            "auto: no CUDA device of their own on ranks 4-7,12-15 (more ranks than devices on their host; NCCL needs "
            "one device per rank)");
  EXPECT_THAT(choose_transport(Transport::kNccl, true, cluster(3, 3, 1)),
              StatusIs(StatusCode::kUnavailable, HasSubstr("no CUDA device of their own on ranks 1-2")));
}

TEST(PlacementFromHostKeys, NumbersRanksPerHostInRankOrder) {
  const std::vector<std::string> keys{"a", "b", "a", "c", "b", "a"};
  const int expect_rank[] = {0, 0, 1, 0, 1, 2};
  const int expect_size[] = {3, 2, 3, 1, 2, 3};
  for (int r = 0; r < 6; ++r) {
    const NodePlacement p = placement_from_host_keys(r, keys);
    EXPECT_EQ(p.local_rank, expect_rank[r]) << r;
    EXPECT_EQ(p.local_size, expect_size[r]) << r;
  }
}

TEST(NodePlacement, OneRankIsAloneOnItsHost) {
  SelfComm comm;
  auto p = node_placement(comm);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->local_rank, 0);
  EXPECT_EQ(p->local_size, 1);
}

TEST(AgreeOnTransport, GathersTheReportsOfEveryRank) {
  SelfComm comm;
  auto none = agree_on_transport(comm, Transport::kAuto, true, 0, NodePlacement{0, 1});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->reason, "auto: no CUDA device on rank 0");
  auto one = agree_on_transport(comm, Transport::kAuto, true, 1, NodePlacement{0, 1});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->transport, Transport::kNccl);
  EXPECT_THAT(agree_on_transport(comm, Transport::kNccl, true, 0, NodePlacement{0, 1}),
              StatusIs(StatusCode::kUnavailable, HasSubstr("no CUDA device on rank 0")));
}

}  // namespace
}  // namespace ucp::comm
