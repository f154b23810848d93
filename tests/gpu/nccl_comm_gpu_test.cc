// NcclComm on real devices at 1 and 2 ranks: all-to-all-v delivers exactly what MpiComm does,
// over many staging rounds; plan bugs come back as kInternal on every rank and leave the
// communicator usable; control collectives go through. Every payload byte is a function of
// (source, destination, index). No ASSERT before a collective (a rank leaving early would hang).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "ucp/comm/mpi_comm.h"
#include "ucp/comm/nccl_comm.h"

namespace ucp::comm {
namespace {

std::byte pattern(int src, int dst, std::uint64_t i) {
  return static_cast<std::byte>((static_cast<std::uint64_t>(src) * 131 + static_cast<std::uint64_t>(dst) * 31 + i * 7 +
                                 i / 251 + 1) % 251);
}

std::unique_ptr<Communicator> nccl_world(std::uint64_t staging, bool self_through_nccl = false) {
  std::unique_ptr<Communicator> boot = make_mpi_world();
  NcclCommOptions o;
  o.staging_bytes = staging;
  o.self_through_nccl = self_through_nccl;
  o.timeout_s = 120;
  auto made = make_nccl_comm(boot, o);
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  return made.ok() ? std::move(*made) : nullptr;
}

// Sends `bytes(src, dst)` from every rank to every rank (itself included), receive layout in
// reverse rank order, and checks every received byte.
void exchange_and_check(Communicator& comm, std::uint64_t (*bytes)(int, int)) {
  const int n = comm.size(), me = comm.rank();
  std::vector<std::uint64_t> sc(n), so(n), rc(n), ro(n);
  std::uint64_t send_total = 0, recv_total = 0;
  for (int d = 0; d < n; ++d) {
    sc[d] = bytes(me, d);
    so[d] = send_total;
    send_total += sc[d];
  }
  for (int s = n - 1; s >= 0; --s) {
    rc[s] = bytes(s, me);
    ro[s] = recv_total;
    recv_total += rc[s];
  }
  std::vector<std::byte> send(send_total), recv(recv_total, std::byte{0xEE});
  for (int d = 0; d < n; ++d)
    for (std::uint64_t i = 0; i < sc[d]; ++i) send[so[d] + i] = pattern(me, d, i);
  const base::Status s = comm.all_to_all_v(send, sc, so, recv, rc, ro);
  EXPECT_TRUE(s.ok()) << s.to_string();
  std::uint64_t wrong = 0;
  for (int src = 0; src < n; ++src)
    for (std::uint64_t i = 0; i < rc[src]; ++i) wrong += recv[ro[src] + i] != pattern(src, me, i);
  EXPECT_EQ(wrong, 0u) << "rank " << me;
}

TEST(NcclComm, DescribesItself) {
  auto comm = nccl_world(1u << 20);
  ASSERT_NE(comm, nullptr);
  EXPECT_THAT(comm->description(), testing::MatchesRegex("NCCL [0-9]+\\.[0-9]+\\.[0-9]+ on cuda:[0-9]+, control "
                                                         "collectives over MPI .*"));
}

TEST(NcclComm, AllToAllVOverManyRounds) {
  // 64 KiB staging: 16 KiB pieces at 2 ranks, so ~100 KB messages take several rounds.
  auto comm = nccl_world(64u << 10);
  ASSERT_NE(comm, nullptr);
  exchange_and_check(*comm, [](int s, int d) -> std::uint64_t { return 100000u + 1000u * s + 37u * d; });
  exchange_and_check(*comm, [](int, int) -> std::uint64_t { return 0; });
  exchange_and_check(*comm, [](int s, int d) -> std::uint64_t { return s == d ? 5000u : 0u; });
  exchange_and_check(*comm, [](int s, int d) -> std::uint64_t { return s == 0 && d != 0 ? 3u << 20 : 1u; });
}

TEST(NcclComm, SelfMessagesThroughTheDevice) {
  // At one rank this is the only test that moves bytes through ncclSend/ncclRecv.
  auto comm = nccl_world(64u << 10, /*self_through_nccl=*/true);
  ASSERT_NE(comm, nullptr);
  exchange_and_check(*comm, [](int s, int d) -> std::uint64_t { return 100000u + 1000u * s + 37u * d; });
  exchange_and_check(*comm, [](int s, int d) -> std::uint64_t { return s == d ? (2u << 20) + 3 : 0u; });
}

TEST(NcclComm, InconsistentCountsFailEverywhereAndTheCommStaysUsable) {
  auto comm = nccl_world(1u << 20);
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  // Rank 0 expects one byte more from the last rank than it sends (with one rank: from itself).
  std::vector<std::uint64_t> sc(n, 16), so(n), rc(n, 16), ro(n);
  for (int r = 0; r < n; ++r) so[r] = ro[r] = 16u * r;
  if (me == 0) {
    rc[n - 1] = 17;
    ro[n - 1] = 16u * (n - 1);
  }
  std::vector<std::byte> send(16u * n), recv(16u * n + 1);
  const base::Status s = comm->all_to_all_v(send, sc, so, recv, rc, ro);
  EXPECT_EQ(s.code(), base::StatusCode::kInternal) << s.to_string();
  exchange_and_check(*comm, [](int s2, int d) -> std::uint64_t { return 4096u + s2 + d; });
}

TEST(NcclComm, ControlCollectivesGoThrough) {
  auto comm = nccl_world(1u << 20);
  ASSERT_NE(comm, nullptr);
  EXPECT_TRUE(comm->barrier().ok());
  std::uint64_t v[2] = {static_cast<std::uint64_t>(comm->rank()), 1};
  EXPECT_TRUE(comm->all_reduce_max(v).ok());
  EXPECT_EQ(v[0], static_cast<std::uint64_t>(comm->size() - 1));
  std::vector<std::byte> data(comm->rank() == 0 ? 3 : 0, std::byte{9});
  EXPECT_TRUE(comm->broadcast(data, 0).ok());
  EXPECT_EQ(data.size(), 3u);
  auto gathered = comm->all_gather(data);
  EXPECT_TRUE(gathered.ok());
  if (gathered.ok()) {
    EXPECT_EQ(gathered->size(), static_cast<std::size_t>(comm->size()));
  }
}

}  // namespace
}  // namespace ucp::comm
