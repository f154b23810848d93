// MpiComm under mpirun at 1..4 ranks. Every payload byte is a function of (source rank,
// destination rank, index), so misrouted, reordered or truncated data shows up as a mismatch.
// Tests avoid ASSERT before a collective: a rank leaving a test early would hang the others.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testutil/temp_dir.h"
#include "ucp/comm/communicator.h"
#include "ucp/comm/mpi_comm.h"

namespace ucp::comm {
namespace {

using base::StatusCode;
using testing::HasSubstr;
using testing::MatchesRegex;
using testing::StartsWith;

std::byte pattern(int src, int dst, std::uint64_t i) {
  return static_cast<std::byte>((static_cast<std::uint64_t>(src) * 131 + static_cast<std::uint64_t>(dst) * 31 +
                                 i * 7 + i / 251 + 1) % 251);
}

std::vector<std::byte> pattern_bytes(int src, int dst, std::uint64_t n) {
  std::vector<std::byte> out(n);
  for (std::uint64_t i = 0; i < n; ++i) out[i] = pattern(src, dst, i);
  return out;
}

std::unique_ptr<Communicator> world(std::uint64_t chunk = INT_MAX) { return make_mpi_world(MpiCommOptions{chunk}); }

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

TEST(MpiComm, MatchesWorld) {
  auto comm = world();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->rank(), world_rank());
  EXPECT_EQ(comm->size(), world_size());
  EXPECT_THAT(comm->description(), MatchesRegex("MPI \\(.+\\)"));  // "MPI (Open MPI v4.1.4)"
  EXPECT_TRUE(comm->barrier().ok());
}

TEST(MpiComm, WorldCommunicatorUsesInitialisedMpi) {
  int argc = 0;
  char** argv = nullptr;
  auto comm = make_world_communicator(&argc, &argv);
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->size(), world_size());
  EXPECT_EQ(comm->rank(), world_rank());
  EXPECT_THAT(comm->description(), StartsWith("MPI"));
  EXPECT_TRUE(mpi_available());
}

// Chunk sizes: INT_MAX is the direct (one MPI call) path; the small ones force the chunked paths.
class Chunked : public testing::TestWithParam<std::uint64_t> {};
INSTANTIATE_TEST_SUITE_P(ChunkSizes, Chunked, testing::Values(std::uint64_t{INT_MAX}, 64, 5, 1),
                         [](const auto& info) { return "chunk" + std::to_string(info.param); });

TEST_P(Chunked, BroadcastFromEveryRootAndSize) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  // Large sizes only on the fast path: chunk 1 would mean 100003 broadcasts.
  std::vector<std::uint64_t> sizes = {0, 1, 1000};
  if (GetParam() >= 64) sizes.push_back(100003);
  for (int root = 0; root < n; ++root) {
    for (std::uint64_t size : sizes) {
      std::vector<std::byte> data = me == root ? pattern_bytes(root, 0, size)
                                               : std::vector<std::byte>(static_cast<std::size_t>(me + 1) * 7,
                                                                        std::byte{0x5A});
      base::Status s = comm->broadcast(data, root);
      EXPECT_TRUE(s.ok()) << s.to_string();
      EXPECT_EQ(data, pattern_bytes(root, 0, size)) << "root " << root << " size " << size;
    }
  }
}

TEST(MpiComm, BroadcastRootOutOfRangeIsInternalEverywhere) {
  auto comm = world();
  ASSERT_NE(comm, nullptr);
  std::vector<std::byte> data(3);
  base::Status s = comm->broadcast(data, comm->size());
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_TRUE(comm->barrier().ok());  // nobody was left inside a collective
}

TEST_P(Chunked, AllGatherWithDifferentSizesPerRank) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  auto size_of = [](int r) -> std::uint64_t { return r == 1 ? 0 : 5 + static_cast<std::uint64_t>(r) * 23; };
  const std::vector<std::byte> mine = pattern_bytes(me, 99, size_of(me));
  auto all = comm->all_gather(mine);
  EXPECT_TRUE(all.ok()) << all.status().to_string();
  if (!all.ok()) return;
  EXPECT_EQ(all->size(), static_cast<std::size_t>(n));
  for (int r = 0; r < n && r < static_cast<int>(all->size()); ++r) {
    EXPECT_EQ((*all)[static_cast<std::size_t>(r)], pattern_bytes(r, 99, size_of(r))) << "from rank " << r;
  }
}

TEST_P(Chunked, AllGatherOfNothing) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  auto all = comm->all_gather({});
  EXPECT_TRUE(all.ok());
  if (!all.ok()) return;
  EXPECT_EQ(all->size(), static_cast<std::size_t>(comm->size()));
  for (const auto& v : *all) EXPECT_TRUE(v.empty());
}

TEST_P(Chunked, AllReduceMaxAndSum) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  const std::uint64_t n = static_cast<std::uint64_t>(comm->size()), me = static_cast<std::uint64_t>(comm->rank());

  std::vector<std::uint64_t> mx;
  for (std::uint64_t i = 0; i < 5; ++i) mx.push_back(me * 1000 + i);
  mx.push_back(me == n - 1 ? UINT64_MAX - 1 : 1);  // needs all 64 bits
  EXPECT_TRUE(comm->all_reduce_max(mx).ok());
  for (std::uint64_t i = 0; i < 5; ++i) EXPECT_EQ(mx[i], (n - 1) * 1000 + i);
  EXPECT_EQ(mx[5], UINT64_MAX - 1);

  std::vector<std::uint64_t> sum;
  for (std::uint64_t i = 0; i < 7; ++i) sum.push_back((std::uint64_t{1} << 40) * (me + 1) + i);
  EXPECT_TRUE(comm->all_reduce_sum(sum).ok());
  for (std::uint64_t i = 0; i < 7; ++i) EXPECT_EQ(sum[i], (std::uint64_t{1} << 40) * (n * (n + 1) / 2) + n * i);

  std::vector<std::uint64_t> none;
  EXPECT_TRUE(comm->all_reduce_sum(none).ok());
}

// Bytes rank s sends to rank d: zero for some pairs (from 2 ranks up), up to 37 otherwise.
std::uint64_t a2a_count(int s, int d) {
  if (s != d && (s * 2 + d) % 3 == 1) return 0;
  return 1 + static_cast<std::uint64_t>((s * 7 + d * 3) % 5) * 9;
}

TEST_P(Chunked, AllToAllVDeliversEveryByteToItsOffset) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  const std::size_t un = static_cast<std::size_t>(n);

  // Send layout: destinations in order, each preceded by a 2-byte gap.
  std::vector<std::uint64_t> send_counts(un), send_offsets(un);
  std::uint64_t pos = 0;
  for (int d = 0; d < n; ++d) {
    pos += 2;
    send_offsets[d] = pos;
    send_counts[d] = a2a_count(me, d);
    pos += send_counts[d];
  }
  std::vector<std::byte> send(pos, std::byte{0xAB});
  for (int d = 0; d < n; ++d) {
    auto block = pattern_bytes(me, d, send_counts[d]);
    std::copy(block.begin(), block.end(), send.begin() + static_cast<std::ptrdiff_t>(send_offsets[d]));
  }

  // Receive layout: sources in reverse order, each preceded by a 3-byte gap that must stay 0xEE.
  std::vector<std::uint64_t> recv_counts(un), recv_offsets(un);
  pos = 0;
  for (int s = n - 1; s >= 0; --s) {
    pos += 3;
    recv_offsets[s] = pos;
    recv_counts[s] = a2a_count(s, me);
    pos += recv_counts[s];
  }
  std::vector<std::byte> recv(pos + 3, std::byte{0xEE});

  base::Status st = comm->all_to_all_v(send, send_counts, send_offsets, recv, recv_counts, recv_offsets);
  EXPECT_TRUE(st.ok()) << st.to_string();

  std::vector<std::byte> expected(recv.size(), std::byte{0xEE});
  for (int s = 0; s < n; ++s) {
    auto block = pattern_bytes(s, me, recv_counts[s]);
    std::copy(block.begin(), block.end(), expected.begin() + static_cast<std::ptrdiff_t>(recv_offsets[s]));
  }
  EXPECT_EQ(recv, expected);
}

TEST_P(Chunked, AllToAllVWithOnlyZeroCounts) {
  auto comm = world(GetParam());
  ASSERT_NE(comm, nullptr);
  const std::vector<std::uint64_t> zeros(static_cast<std::size_t>(comm->size()), 0);
  base::Status st = comm->all_to_all_v({}, zeros, zeros, {}, zeros, zeros);
  EXPECT_TRUE(st.ok()) << st.to_string();
}

// Everyone sends 4 bytes to everyone; `tweak` may then break this rank's arguments.
template <typename Tweak>
base::Status uniform_exchange(Communicator& comm, Tweak tweak) {
  const std::size_t n = static_cast<std::size_t>(comm.size());
  std::vector<std::uint64_t> send_counts(n, 4), recv_counts(n, 4), send_offsets(n), recv_offsets(n);
  for (std::size_t r = 0; r < n; ++r) send_offsets[r] = recv_offsets[r] = 4 * r;
  std::vector<std::byte> send(4 * n + 1, std::byte{1}), recv(4 * n + 1, std::byte{0});
  tweak(send_counts, send_offsets, recv_counts, recv_offsets);
  return comm.all_to_all_v(send, send_counts, send_offsets, recv, recv_counts, recv_offsets);
}

TEST(MpiComm, AllToAllVPairwiseCountMismatchFailsOnEveryRank) {
  auto comm = world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  base::Status st = uniform_exchange(*comm, [&](auto&, auto&, auto& recv_counts, auto&) {
    if (me == 0) recv_counts[static_cast<std::size_t>(n - 1)] = 5;  // rank n-1 only sends 4
  });
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  if (me == 0) {
    EXPECT_EQ(st.message(), "all_to_all_v: rank " + std::to_string(n - 1) + " sends 4 bytes to rank 0, which expects 5");
  } else {
    EXPECT_THAT(st.message(), HasSubstr("another rank passed inconsistent counts"));
  }
  // The communicator is still in step: a correct exchange works afterwards.
  st = uniform_exchange(*comm, [](auto&, auto&, auto&, auto&) {});
  EXPECT_TRUE(st.ok()) << st.to_string();
}

TEST(MpiComm, AllToAllVOutOfRangeOrMisSizedArgumentsFailOnEveryRank) {
  auto comm = world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  base::Status st = uniform_exchange(*comm, [&](auto&, auto& send_offsets, auto&, auto&) {
    if (me == n - 1) send_offsets[0] = 4 * static_cast<std::uint64_t>(n);  // [4n, 4n+4) past a 4n+1 buffer
  });
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  if (me == n - 1) {
    EXPECT_THAT(st.message(), HasSubstr("send range for rank 0 [" + std::to_string(4 * n) + ", +4) runs past the buffer"));
  } else {
    EXPECT_THAT(st.message(), HasSubstr("another rank"));
  }

  st = uniform_exchange(*comm, [&](auto&, auto&, auto& recv_counts, auto&) {
    if (me == 0) recv_counts.push_back(0);
  });
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  if (me == 0) EXPECT_THAT(st.message(), HasSubstr("one entry per rank"));

  st = uniform_exchange(*comm, [](auto&, auto&, auto&, auto&) {});
  EXPECT_TRUE(st.ok()) << st.to_string();
}

TEST(CollectiveTempDir, SharedByAllRanksAndRemovedAtTheEnd) {
  auto comm = world();
  ASSERT_NE(comm, nullptr);
  const int n = comm->size(), me = comm->rank();
  std::filesystem::path p;
  {
    testutil::CollectiveTempDir dir(*comm);
    p = dir.path();
    const std::string text = p.string();
    auto all = comm->all_gather(std::as_bytes(std::span(text)));
    EXPECT_TRUE(all.ok());
    if (all.ok()) {
      for (const auto& other : *all) EXPECT_EQ(std::string(reinterpret_cast<const char*>(other.data()), other.size()), text);
    }
    EXPECT_TRUE(std::filesystem::is_directory(p));
    std::ofstream(dir / ("rank_" + std::to_string(me))) << me;
    EXPECT_TRUE(comm->barrier().ok());
    if (me == 0) {
      for (int r = 0; r < n; ++r) EXPECT_TRUE(std::filesystem::exists(dir / ("rank_" + std::to_string(r))));
    }
  }
  EXPECT_TRUE(comm->barrier().ok());  // rank 0 has removed it by now
  EXPECT_FALSE(std::filesystem::exists(p));
}

}  // namespace
}  // namespace ucp::comm
