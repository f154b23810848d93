#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "ucp/comm/communicator.h"
#include "ucp/comm/self_comm.h"

namespace ucp::comm {
namespace {

using base::Status;
using base::StatusCode;

TEST(Agree, AllOkOverSelf) {
  SelfComm comm;
  Agreement a = agree(comm, "read", Status());
  EXPECT_TRUE(a.status.ok());
  EXPECT_EQ(a.failed_ranks, 0);
}

TEST(Agree, LocalFailureOverSelf) {
  SelfComm comm;
  Agreement a = agree(comm, "read", base::data_loss("'x.pt': truncated"));
  EXPECT_EQ(a.status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(a.status.message(), "step 'read' failed on 1/1 ranks: rank 0: DataLoss: 'x.pt': truncated");
  EXPECT_EQ(a.failed_ranks, 1);
}

TEST(SummarizeAgreement, EmptyAndAllOk) {
  EXPECT_TRUE(summarize_agreement("s", {}).status.ok());
  std::vector<Status> ok(3);
  Agreement a = summarize_agreement("s", ok);
  EXPECT_TRUE(a.status.ok());
  EXPECT_EQ(a.failed_ranks, 0);
}

TEST(SummarizeAgreement, IdenticalFailuresAreOneGroup) {
  std::vector<Status> s(4, base::not_found("missing"));
  Agreement a = summarize_agreement("s", s);
  EXPECT_EQ(a.status.code(), StatusCode::kNotFound);
  EXPECT_EQ(a.status.message(), "step 's' failed on 4/4 ranks: ranks 0-3: NotFound: missing");
  EXPECT_EQ(a.failed_ranks, 4);
}

TEST(SummarizeAgreement, GroupsOrderedByLowestRankWithRankRanges) {
  std::vector<Status> s = {Status(),
                           base::data_loss("a"),
                           base::not_found("b"),
                           base::data_loss("a"),
                           Status(),
                           base::data_loss("a"),
                           base::data_loss("a"),
                           base::data_loss("a")};
  Agreement a = summarize_agreement("plan", s);
  EXPECT_EQ(a.status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(a.status.message(), "step 'plan' failed on 6/8 ranks: ranks 1,3,5-7: DataLoss: a; rank 2: NotFound: b");
  EXPECT_EQ(a.failed_ranks, 6);
}

TEST(SummarizeAgreement, SameMessageDifferentCodeIsSeparate) {
  std::vector<Status> s = {base::data_loss("x"), base::not_found("x")};
  Agreement a = summarize_agreement("s", s);
  EXPECT_EQ(a.status.message(), "step 's' failed on 2/2 ranks: rank 0: DataLoss: x; rank 1: NotFound: x");
}

TEST(SummarizeAgreement, CodeIsThatOfLowestFailingRank) {
  std::vector<Status> s = {Status(), Status(), base::internal_error("i"), base::data_loss("d"),
                           base::internal_error("i")};
  Agreement a = summarize_agreement("s", s);
  EXPECT_EQ(a.status.code(), StatusCode::kInternal);
  EXPECT_EQ(a.status.message(), "step 's' failed on 3/5 ranks: ranks 2,4: Internal: i; rank 3: DataLoss: d");
}

TEST(SummarizeAgreement, ListsAtMostEightGroups) {
  std::vector<Status> s;
  for (int r = 0; r < 12; ++r) s.push_back(base::data_loss("m" + std::to_string(r)));
  Agreement a = summarize_agreement("s", s);
  EXPECT_EQ(a.status.message(),
            "step 's' failed on 12/12 ranks: rank 0: DataLoss: m0; rank 1: DataLoss: m1; rank 2: DataLoss: m2; "
            "rank 3: DataLoss: m3; rank 4: DataLoss: m4; rank 5: DataLoss: m5; rank 6: DataLoss: m6; "
            "rank 7: DataLoss: m7; ... and 4 more failing ranks");
  EXPECT_EQ(a.failed_ranks, 12);
}

TEST(SummarizeAgreement, LongMessagesAreTruncatedTo1000Bytes) {
  const std::string prefix = "step 's' failed on 1/1 ranks: rank 0: DataLoss: ";
  std::vector<Status> s = {base::data_loss(std::string(5000, 'x'))};
  Agreement a = summarize_agreement("s", s);
  EXPECT_EQ(a.status.message(), prefix + std::string(988, 'x') + " [truncated]");

  // Exactly 1000 bytes: untouched.
  s = {base::data_loss(std::string(1000, 'y'))};
  EXPECT_EQ(summarize_agreement("s", s).status.message(), prefix + std::string(1000, 'y'));

  // The cut (at byte 988) would fall inside the two-byte "é" at 987..988: the whole character goes.
  s = {base::data_loss(std::string(987, 'a') + "\xC3\xA9" + std::string(100, 'b'))};
  EXPECT_EQ(summarize_agreement("s", s).status.message(), prefix + std::string(987, 'a') + " [truncated]");
}

// A communicator of `size` ranks whose all_gather is scripted; nothing else is used by agree().
class FakeComm final : public Communicator {
 public:
  enum class Mode { kFail, kReplicate, kEmptySecond, kBadCodeSecond };
  FakeComm(int size, Mode mode) : size_(size), mode_(mode) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  std::string description() const override { return "fake"; }
  Status barrier() noexcept override { return base::internal_error("unused"); }
  Status broadcast(std::vector<std::byte>&, int) noexcept override { return base::internal_error("unused"); }
  base::Result<std::vector<std::vector<std::byte>>> all_gather(std::span<const std::byte> mine) noexcept override {
    std::vector<std::byte> own(mine.begin(), mine.end());
    switch (mode_) {
      case Mode::kFail: return base::unavailable("MPI_Allgather failed: boom");
      case Mode::kReplicate: return std::vector<std::vector<std::byte>>(static_cast<std::size_t>(size_), own);
      case Mode::kEmptySecond: return std::vector<std::vector<std::byte>>{own, {}};
      case Mode::kBadCodeSecond: return std::vector<std::vector<std::byte>>{own, {std::byte{200}}};
    }
    return base::internal_error("unreachable");
  }
  Status all_reduce_max(std::span<std::uint64_t>) noexcept override { return base::internal_error("unused"); }
  Status all_reduce_sum(std::span<std::uint64_t>) noexcept override { return base::internal_error("unused"); }
  Status all_to_all_v(std::span<const std::byte>, std::span<const std::uint64_t>, std::span<const std::uint64_t>,
                      std::span<std::byte>, std::span<const std::uint64_t>,
                      std::span<const std::uint64_t>) noexcept override {
    return base::internal_error("unused");
  }
  [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }

 private:
  int size_;
  Mode mode_;
};

TEST(Agree, ExchangeFailureIsUnavailable) {
  FakeComm comm(2, FakeComm::Mode::kFail);
  Agreement a = agree(comm, "x", base::data_loss("ignored"));
  EXPECT_EQ(a.status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(a.status.message(), "step 'x': could not exchange outcomes between ranks: MPI_Allgather failed: boom");
  EXPECT_EQ(a.failed_ranks, 0);
}

TEST(Agree, RecordsRoundTripThroughTheExchange) {
  FakeComm comm(3, FakeComm::Mode::kReplicate);
  // Any bytes survive the encoding, including NUL and non-UTF-8.
  const std::string msg("bad \0 byte \xff", 12);
  Agreement a = agree(comm, "write", base::resource_exhausted(msg));
  EXPECT_EQ(a.status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(a.status.message(), "step 'write' failed on 3/3 ranks: ranks 0-2: ResourceExhausted: " + msg);
  EXPECT_EQ(a.failed_ranks, 3);

  Agreement ok = agree(comm, "write", Status());
  EXPECT_TRUE(ok.status.ok());
}

TEST(Agree, MalformedRecordsBecomeInternalErrors) {
  FakeComm empty(2, FakeComm::Mode::kEmptySecond);
  Agreement a = agree(empty, "s", Status());
  EXPECT_EQ(a.status.code(), StatusCode::kInternal);
  EXPECT_EQ(a.status.message(), "step 's' failed on 1/2 ranks: rank 1: Internal: rank 1 sent an empty agreement record");

  FakeComm bad(2, FakeComm::Mode::kBadCodeSecond);
  a = agree(bad, "s", Status());
  EXPECT_EQ(a.status.message(), "step 's' failed on 1/2 ranks: rank 1: Internal: rank 1 sent unknown status code 200");
}

}  // namespace
}  // namespace ucp::comm
