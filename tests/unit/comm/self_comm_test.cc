#include "ucp/comm/self_comm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace ucp::comm {
namespace {

using base::StatusCode;
using testing::HasSubstr;

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

TEST(SelfComm, IsOneRank) {
  SelfComm comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_THAT(comm.description(), HasSubstr("self"));
  EXPECT_TRUE(comm.barrier().ok());
}

TEST(SelfComm, BroadcastFromRootZeroKeepsData) {
  SelfComm comm;
  std::vector<std::byte> data = bytes({1, 2, 3});
  ASSERT_TRUE(comm.broadcast(data, 0).ok());
  EXPECT_EQ(data, bytes({1, 2, 3}));
}

TEST(SelfComm, BroadcastFromMissingRootIsInternal) {
  SelfComm comm;
  std::vector<std::byte> data = bytes({1});
  base::Status s = comm.broadcast(data, 1);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("root 1"));
}

TEST(SelfComm, AllGatherReturnsOwnContribution) {
  SelfComm comm;
  const std::vector<std::byte> mine = bytes({9, 8, 7, 6});
  auto all = comm.all_gather(mine);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0], mine);

  auto empty = comm.all_gather({});
  ASSERT_TRUE(empty.ok());
  ASSERT_EQ(empty->size(), 1u);
  EXPECT_TRUE((*empty)[0].empty());
}

TEST(SelfComm, AllReduceLeavesValues) {
  SelfComm comm;
  std::vector<std::uint64_t> v = {0, 5, UINT64_MAX};
  ASSERT_TRUE(comm.all_reduce_max(v).ok());
  EXPECT_EQ(v, (std::vector<std::uint64_t>{0, 5, UINT64_MAX}));
  ASSERT_TRUE(comm.all_reduce_sum(v).ok());
  EXPECT_EQ(v, (std::vector<std::uint64_t>{0, 5, UINT64_MAX}));
}

TEST(SelfComm, AllToAllCopiesBetweenOffsets) {
  SelfComm comm;
  const std::vector<std::byte> send = bytes({0, 0, 1, 2, 3, 0});
  std::vector<std::byte> recv(5, std::byte{0xEE});
  const std::uint64_t count[] = {3}, send_off[] = {2}, recv_off[] = {1};
  ASSERT_TRUE(comm.all_to_all_v(send, count, send_off, recv, count, recv_off).ok());
  EXPECT_EQ(recv, bytes({0xEE, 1, 2, 3, 0xEE}));
}

TEST(SelfComm, AllToAllZeroCountWithEmptyBuffers) {
  SelfComm comm;
  const std::uint64_t zero[] = {0};
  EXPECT_TRUE(comm.all_to_all_v({}, zero, zero, {}, zero, zero).ok());
}

TEST(SelfComm, AllToAllRejectsBadArguments) {
  SelfComm comm;
  std::vector<std::byte> send(4), recv(4);
  const std::uint64_t zero[] = {0}, four[] = {4}, three[] = {3}, one[] = {1};
  const std::uint64_t two_entries[] = {0, 0};

  base::Status s = comm.all_to_all_v(send, four, zero, recv, three, zero);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("sends 4 bytes to rank 0, which expects 3"));

  s = comm.all_to_all_v(send, four, one, recv, four, zero);  // send range [1, 5) of 4 bytes
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("send range [1, +4) runs past the buffer (size 4)"));

  s = comm.all_to_all_v(send, four, zero, recv, four, one);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("recv range"));

  const std::uint64_t huge[] = {UINT64_MAX};  // offset + count overflows
  s = comm.all_to_all_v(send, four, huge, recv, four, zero);
  EXPECT_EQ(s.code(), StatusCode::kInternal);

  s = comm.all_to_all_v(send, two_entries, two_entries, recv, zero, zero);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("one entry per rank"));

  EXPECT_EQ(recv, std::vector<std::byte>(4));  // nothing was written by the failed calls
}

TEST(SelfCommDeathTest, AbortExitsWithCode) {
  SelfComm comm;
  EXPECT_EXIT(comm.abort(7), testing::ExitedWithCode(7), "");
}

}  // namespace
}  // namespace ucp::comm
