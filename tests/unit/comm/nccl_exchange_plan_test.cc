// plan_nccl_exchange on CPU: the schedule every rank computes alone must pair each send with the
// peer's receive in the same round, and executing all ranks' schedules (simulated here: staging,
// "NCCL" moves between staging buffers, unpacking) must deliver exactly what all-to-all-v means,
// every byte once, nothing else touched.
#include "ucp/comm/nccl_exchange_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "testutil/status_matchers.h"
#include "ucp/base/checked_math.h"

namespace ucp::comm {
namespace {

using base::StatusCode;
using testing::HasSubstr;
using testutil::StatusIs;

constexpr std::uint64_t kMiB = 1u << 20;

TEST(NcclPieceBytes, SplitsHalfTheBudgetOverThePeers) {
  EXPECT_EQ(nccl_piece_bytes(256 * kMiB, 2), 128 * kMiB);
  EXPECT_EQ(nccl_piece_bytes(256 * kMiB, 5), 32 * kMiB);
  EXPECT_EQ(nccl_piece_bytes(256 * kMiB, 1), 128 * kMiB);  // no peers: only the self copy runs anyway
  // 100 MiB / 2 / 3 = 17476266.67 -> rounded down to a multiple of 256.
  EXPECT_EQ(nccl_piece_bytes(100 * kMiB, 4), 17476096u);
  EXPECT_EQ(nccl_piece_bytes(100 * kMiB, 4) % kNcclStageAlign, 0u);
  EXPECT_EQ(nccl_piece_bytes(1000, 8), kNcclMinPiece);  // floor
  EXPECT_EQ(nccl_piece_bytes(0, 2), kNcclMinPiece);
}

TEST(NcclStagingBudget, IsAQuarterOfMaxMemoryWithinBounds) {
  EXPECT_EQ(nccl_staging_budget(1024 * kMiB), 256 * kMiB);
  EXPECT_EQ(nccl_staging_budget(64ull << 30), 1024 * kMiB);  // capped at 1 GiB
  EXPECT_EQ(nccl_staging_budget(2 * kMiB), 1 * kMiB);        // raised to 1 MiB
  EXPECT_EQ(nccl_staging_budget(100), 100u);                 // never above max_memory
  EXPECT_EQ(nccl_staging_budget(0), 1u);
}

// One rank's all-to-all-v arguments.
struct RankArgs {
  std::vector<std::uint64_t> send_counts, send_offsets, recv_counts, recv_offsets;
  std::uint64_t send_size = 0, recv_size = 0;
};

// Buffers laid out in a shuffled peer order with gaps, as a caller might.
std::vector<RankArgs> make_args(const std::vector<std::vector<std::uint64_t>>& counts, std::mt19937_64& rng) {
  const std::size_t n = counts.size();
  std::vector<RankArgs> args(n);
  for (std::size_t r = 0; r < n; ++r) {
    RankArgs& a = args[r];
    a.send_counts.resize(n);
    a.send_offsets.resize(n);
    a.recv_counts.resize(n);
    a.recv_offsets.resize(n);
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t p : order) {
      a.send_offsets[p] = a.send_size + rng() % 5;
      a.send_counts[p] = counts[r][p];
      a.send_size = a.send_offsets[p] + a.send_counts[p];
    }
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t p : order) {
      a.recv_offsets[p] = a.recv_size + rng() % 5;
      a.recv_counts[p] = counts[p][r];
      a.recv_size = a.recv_offsets[p] + a.recv_counts[p];
    }
    a.send_size += rng() % 3;
    a.recv_size += rng() % 3;
  }
  return args;
}

std::uint8_t payload(std::size_t src, std::size_t dst, std::uint64_t i) {
  return static_cast<std::uint8_t>((src * 131 + dst * 31 + i * 7 + i / 251 + 1) % 251);
}

// Runs every rank's schedule as NcclComm would and checks the outcome byte by byte.
void simulate_and_check(const std::vector<std::vector<std::uint64_t>>& counts, std::uint64_t piece,
                        std::mt19937_64& rng, bool self_through_nccl = false) {
  const std::size_t n = counts.size();
  const std::vector<RankArgs> args = make_args(counts, rng);
  std::vector<NcclExchangePlan> plans;
  for (std::size_t r = 0; r < n; ++r) {
    const RankArgs& a = args[r];
    auto plan = plan_nccl_exchange(static_cast<int>(r), static_cast<int>(n), a.send_size, a.send_counts,
                                   a.send_offsets, a.recv_size, a.recv_counts, a.recv_offsets, piece,
                                   self_through_nccl);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    plans.push_back(std::move(*plan));
  }

  constexpr std::uint8_t kUntouched = 0xEE;  // not a payload value (payload < 251)
  std::vector<std::vector<std::uint8_t>> send(n), recv(n);
  for (std::size_t r = 0; r < n; ++r) {
    send[r].assign(args[r].send_size, 0xFF);
    for (std::size_t p = 0; p < n; ++p)
      for (std::uint64_t i = 0; i < args[r].send_counts[p]; ++i) send[r][args[r].send_offsets[p] + i] = payload(r, p, i);
    recv[r].assign(args[r].recv_size, kUntouched);
  }

  std::size_t rounds = 0;
  for (const auto& p : plans) rounds = std::max(rounds, p.rounds.size());
  for (std::size_t k = 0; k < rounds; ++k) {
    // Stage (host -> "device") on every rank.
    std::vector<std::vector<std::uint8_t>> send_stage(n), recv_stage(n);
    for (std::size_t r = 0; r < n; ++r) {
      if (k >= plans[r].rounds.size()) continue;
      const NcclRound& round = plans[r].rounds[k];
      EXPECT_LE(round.send_stage_bytes, plans[r].max_send_stage);
      EXPECT_LE(round.recv_stage_bytes, plans[r].max_recv_stage);
      send_stage[r].assign(round.send_stage_bytes, 0);
      recv_stage[r].assign(round.recv_stage_bytes, kUntouched);
      std::vector<bool> send_used(round.send_stage_bytes), recv_used(round.recv_stage_bytes);
      for (const NcclPeerOp& op : round.ops) {
        if (!self_through_nccl) {
          EXPECT_NE(op.peer, static_cast<int>(r)) << "self traffic must stay on the host";
        }
        EXPECT_TRUE(op.send_bytes > 0 || op.recv_bytes > 0);
        EXPECT_LE(op.send_bytes, piece);
        EXPECT_LE(op.recv_bytes, piece);
        EXPECT_EQ(op.send_stage % kNcclStageAlign, 0u);
        EXPECT_EQ(op.recv_stage % kNcclStageAlign, 0u);
        for (std::uint64_t i = 0; i < op.send_bytes; ++i) {
          ASSERT_LT(op.send_stage + i, send_used.size());
          EXPECT_FALSE(send_used[op.send_stage + i]) << "send staging overlap";
          send_used[op.send_stage + i] = true;
          send_stage[r][op.send_stage + i] = send[r][op.src_offset + i];
        }
        for (std::uint64_t i = 0; i < op.recv_bytes; ++i) {
          ASSERT_LT(op.recv_stage + i, recv_used.size());
          EXPECT_FALSE(recv_used[op.recv_stage + i]) << "receive staging overlap";
          recv_used[op.recv_stage + i] = true;
        }
      }
    }
    // "NCCL": each send must meet a receive of the same size, posted by the peer in the same round.
    for (std::size_t r = 0; r < n; ++r) {
      if (k >= plans[r].rounds.size()) continue;
      for (const NcclPeerOp& op : plans[r].rounds[k].ops) {
        if (op.send_bytes == 0) continue;
        const auto p = static_cast<std::size_t>(op.peer);
        ASSERT_LT(k, plans[p].rounds.size()) << "rank " << r << " sends to " << p << " in a round " << p << " lacks";
        const NcclPeerOp* match = nullptr;
        for (const NcclPeerOp& other : plans[p].rounds[k].ops)
          if (other.peer == static_cast<int>(r)) match = &other;
        ASSERT_NE(match, nullptr) << "round " << k << ": " << r << " -> " << p << " has no matching receive";
        ASSERT_EQ(match->recv_bytes, op.send_bytes) << "round " << k << ": " << r << " -> " << p;
        std::copy_n(send_stage[r].begin() + static_cast<std::ptrdiff_t>(op.send_stage), op.send_bytes,
                    recv_stage[p].begin() + static_cast<std::ptrdiff_t>(match->recv_stage));
      }
      // And every receive has a sender.
      for (const NcclPeerOp& op : plans[r].rounds[k].ops) {
        if (op.recv_bytes == 0) continue;
        const auto p = static_cast<std::size_t>(op.peer);
        ASSERT_LT(k, plans[p].rounds.size());
        bool found = false;
        for (const NcclPeerOp& other : plans[p].rounds[k].ops)
          found = found || (other.peer == static_cast<int>(r) && other.send_bytes == op.recv_bytes);
        EXPECT_TRUE(found) << "round " << k << ": " << p << " -> " << r << " receive has no send";
      }
    }
    // Unpack ("device" -> host).
    for (std::size_t r = 0; r < n; ++r) {
      if (k >= plans[r].rounds.size()) continue;
      for (const NcclPeerOp& op : plans[r].rounds[k].ops) {
        for (std::uint64_t i = 0; i < op.recv_bytes; ++i) {
          EXPECT_EQ(recv[r][op.dst_offset + i], kUntouched) << "byte delivered twice";
          recv[r][op.dst_offset + i] = recv_stage[r][op.recv_stage + i];
        }
      }
    }
  }
  for (std::size_t r = 0; r < n; ++r) {
    const NcclExchangePlan& plan = plans[r];
    EXPECT_EQ(plan.self_bytes, self_through_nccl ? 0 : counts[r][r]);
    for (std::uint64_t i = 0; i < plan.self_bytes; ++i) recv[r][plan.self_dst + i] = send[r][plan.self_src + i];
    // Expected: payload(s, r, i) at recv_offsets[s] + i, untouched elsewhere.
    std::vector<std::uint8_t> expected(args[r].recv_size, kUntouched);
    for (std::size_t s = 0; s < n; ++s)
      for (std::uint64_t i = 0; i < args[r].recv_counts[s]; ++i) expected[args[r].recv_offsets[s] + i] = payload(s, r, i);
    EXPECT_EQ(recv[r], expected) << "rank " << r;
  }
}

TEST(PlanNcclExchange, RandomExchangesDeliverEveryByteOnce) {
  std::mt19937_64 rng(20261122);
  for (int world : {1, 2, 3, 4, 7}) {
    for (int trial = 0; trial < 12; ++trial) {
      const std::uint64_t piece = kNcclStageAlign * (1 + rng() % 4);  // 256..1024: many rounds
      std::vector<std::vector<std::uint64_t>> counts(static_cast<std::size_t>(world),
                                                     std::vector<std::uint64_t>(static_cast<std::size_t>(world)));
      for (auto& row : counts)
        for (auto& c : row) {
          // Mix empty messages, exact multiples of the piece, and ragged sizes.
          switch (rng() % 4) {
            case 0: c = 0; break;
            case 1: c = piece * (rng() % 4); break;
            default: c = rng() % (5 * piece);
          }
        }
      SCOPED_TRACE("world " + std::to_string(world) + " trial " + std::to_string(trial));
      simulate_and_check(counts, piece, rng);
      if (testing::Test::HasFatalFailure()) return;
      simulate_and_check(counts, piece, rng, /*self_through_nccl=*/true);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(PlanNcclExchange, RoundsFollowTheLargestMessage) {
  // Rank 0 of 3: sends 1000 bytes to 1, receives 2600 from 2; piece 1024 -> 3 rounds.
  const std::vector<std::uint64_t> sc{0, 1000, 0}, so{0, 0, 1000}, rc{0, 0, 2600}, ro{0, 0, 0};
  auto plan = plan_nccl_exchange(0, 3, 1000, sc, so, 2600, rc, ro, 1024);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  ASSERT_EQ(plan->rounds.size(), 3u);
  ASSERT_EQ(plan->rounds[0].ops.size(), 2u);  // peer 1 (send 1000), peer 2 (recv 1024), in that order
  EXPECT_EQ(plan->rounds[0].ops[0].peer, 1);
  EXPECT_EQ(plan->rounds[0].ops[0].send_bytes, 1000u);
  EXPECT_EQ(plan->rounds[0].ops[0].recv_bytes, 0u);
  EXPECT_EQ(plan->rounds[0].ops[1].peer, 2);
  EXPECT_EQ(plan->rounds[0].ops[1].recv_bytes, 1024u);
  EXPECT_EQ(plan->rounds[0].send_stage_bytes, 1024u);  // 1000 aligned up
  ASSERT_EQ(plan->rounds[2].ops.size(), 1u);
  EXPECT_EQ(plan->rounds[2].ops[0].recv_bytes, 2600u - 2048u);
  EXPECT_EQ(plan->rounds[2].ops[0].dst_offset, 2048u);
  EXPECT_EQ(plan->max_send_stage, 1024u);
  EXPECT_EQ(plan->max_recv_stage, 1024u);
}

TEST(PlanNcclExchange, SelfOnlyNeedsNoRound) {
  const std::vector<std::uint64_t> sc{0, 64}, so{0, 8}, rc{0, 64}, ro{0, 0};
  auto plan = plan_nccl_exchange(1, 2, 72, sc, so, 64, rc, ro, 4096);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->rounds.empty());
  EXPECT_EQ(plan->self_src, 8u);
  EXPECT_EQ(plan->self_dst, 0u);
  EXPECT_EQ(plan->self_bytes, 64u);
  EXPECT_EQ(plan->max_send_stage, 0u);
}

TEST(PlanNcclExchange, SelfThroughNcclIsScheduledLikeAPeer) {
  const std::vector<std::uint64_t> c{600}, o{0};
  auto plan = plan_nccl_exchange(0, 1, 600, c, o, 600, c, o, 256, /*self_through_nccl=*/true);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->self_bytes, 0u);
  ASSERT_EQ(plan->rounds.size(), 3u);  // 256 + 256 + 88
  EXPECT_EQ(plan->rounds[2].ops.at(0).peer, 0);
  EXPECT_EQ(plan->rounds[2].ops.at(0).send_bytes, 88u);
  EXPECT_EQ(plan->rounds[2].ops.at(0).recv_bytes, 88u);
  EXPECT_EQ(plan->rounds[2].ops.at(0).dst_offset, 512u);
}

TEST(PlanNcclExchange, StagingStaysWithinTheBudget) {
  // Four ranks, everyone sends 10 MiB to everyone: with a 4 MiB budget each round's staging per
  // direction fits in 2 MiB.
  const std::uint64_t budget = 4 * kMiB, piece = nccl_piece_bytes(budget, 4);
  std::vector<std::uint64_t> counts(4, 10 * kMiB), offsets(4);
  for (int i = 0; i < 4; ++i) offsets[static_cast<std::size_t>(i)] = static_cast<std::uint64_t>(i) * 10 * kMiB;
  auto plan = plan_nccl_exchange(2, 4, 40 * kMiB, counts, offsets, 40 * kMiB, counts, offsets, piece);
  ASSERT_TRUE(plan.ok());
  EXPECT_LE(plan->max_send_stage, budget / 2);
  EXPECT_LE(plan->max_recv_stage, budget / 2);
  EXPECT_EQ(plan->rounds.size(), base::ceil_div(10 * kMiB, piece));
}

TEST(PlanNcclExchange, RejectsWhatOneRankCanSeeIsWrong) {
  const std::vector<std::uint64_t> two{0, 0}, three{0, 0, 0};
  EXPECT_THAT(plan_nccl_exchange(0, 2, 0, three, two, 0, two, two, 256),
              StatusIs(StatusCode::kInternal, HasSubstr("one entry per rank (2), got 3/2/2/2")));
  EXPECT_THAT(plan_nccl_exchange(0, 2, 10, std::vector<std::uint64_t>{0, 8}, std::vector<std::uint64_t>{0, 4}, 0, two,
                                 two, 256),
              StatusIs(StatusCode::kInternal, HasSubstr("send range for rank 1 [4, +8) runs past the buffer (size 10)")));
  const std::uint64_t huge = std::numeric_limits<std::uint64_t>::max();
  EXPECT_THAT(plan_nccl_exchange(1, 2, 0, two, two, 100, std::vector<std::uint64_t>{2, 0},
                                 std::vector<std::uint64_t>{huge, 0}, 256),
              StatusIs(StatusCode::kInternal, HasSubstr("recv range for rank 0")));
  EXPECT_THAT(plan_nccl_exchange(1, 2, 8, std::vector<std::uint64_t>{0, 8}, two, 8, std::vector<std::uint64_t>{0, 4},
                                 two, 256),
              StatusIs(StatusCode::kInternal, HasSubstr("sends 8 bytes to itself but expects 4")));
  EXPECT_THAT(plan_nccl_exchange(0, 2, 0, two, two, 0, two, two, 100),
              StatusIs(StatusCode::kInternal, HasSubstr("not a positive multiple of 256")));
  EXPECT_THAT(plan_nccl_exchange(2, 2, 0, two, two, 0, two, two, 256),
              StatusIs(StatusCode::kInternal, HasSubstr("rank out of range")));
}

}  // namespace
}  // namespace ucp::comm
