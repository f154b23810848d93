// The rank journal of a resumable run: records read back in order, a torn or corrupt tail cut
// off, keep() and reset() cut what the ranks did not all finish; the run identity changes with
// the source files.
#include "ucp/exec/journal.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"

namespace ucp::exec {
namespace {

namespace fs = std::filesystem;
using testutil::IsOk;

RankJournal open_ok(const fs::path& dir, int rank = 0) {
  auto j = RankJournal::open(dir.string(), rank, /*sync=*/false);
  EXPECT_THAT(j.status(), IsOk());
  return std::move(*j);
}

TEST(RankJournal, RecordsAreReadBackInOrder) {
  testutil::TempDir tmp;
  const std::vector<JournalCrc> r0{{0, 1, 64, 4096, 0xdeadbeef}, {2, 0, 0, 8, 7}};
  {
    RankJournal j = open_ok(tmp.path());
    EXPECT_FALSE(j.created());
    ASSERT_THAT(j.record_created(), IsOk());
    ASSERT_THAT(j.record_round(0, r0), IsOk());
    ASSERT_THAT(j.record_round(1, {}), IsOk());
    EXPECT_FALSE(j.record_round(3, {}).ok());  // out of order
    ASSERT_THAT(j.record_finalized(), IsOk());
  }
  RankJournal j = open_ok(tmp.path());
  EXPECT_TRUE(j.created());
  EXPECT_TRUE(j.finalized());
  ASSERT_EQ(j.rounds_done(), 2u);
  EXPECT_EQ(j.crcs_of_round(0), r0);
  EXPECT_TRUE(j.crcs_of_round(1).empty());
}

TEST(RankJournal, TornOrCorruptTailIsCutOff) {
  testutil::TempDir tmp;
  {
    RankJournal j = open_ok(tmp.path(), 1);
    ASSERT_THAT(j.record_created(), IsOk());
    ASSERT_THAT(j.record_round(0, {{0, 0, 0, 4, 1}}), IsOk());
    ASSERT_THAT(j.record_round(1, {{0, 0, 4, 4, 2}}), IsOk());
  }
  const fs::path log = tmp.path() / kJournalDir / "rank-1";
  const auto full = fs::file_size(log);
  fs::resize_file(log, full - 3);  // the last record torn
  {
    RankJournal j = open_ok(tmp.path(), 1);
    EXPECT_EQ(j.rounds_done(), 1u);
    ASSERT_THAT(j.record_round(1, {{0, 0, 4, 4, 3}}), IsOk());  // appended after the cut
  }
  {
    RankJournal j = open_ok(tmp.path(), 1);
    ASSERT_EQ(j.rounds_done(), 2u);
    EXPECT_EQ(j.crcs_of_round(1)[0].crc, 3u);
  }
  // A flipped byte in the last record: it is not trusted.
  std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(log) - 10));
  f.put('\x55');
  f.close();
  EXPECT_EQ(open_ok(tmp.path(), 1).rounds_done(), 1u);
}

TEST(RankJournal, KeepAndResetCutWhatNotEveryRankFinished) {
  testutil::TempDir tmp;
  {
    RankJournal j = open_ok(tmp.path());
    ASSERT_THAT(j.record_created(), IsOk());
    for (std::size_t r = 0; r < 4; ++r) ASSERT_THAT(j.record_round(r, {}), IsOk());
    ASSERT_THAT(j.record_finalized(), IsOk());
    ASSERT_THAT(j.keep(2, /*finalized=*/false), IsOk());
    EXPECT_FALSE(j.finalized());
    ASSERT_THAT(j.record_round(2, {{1, 1, 1, 1, 1}}), IsOk());
  }
  {
    RankJournal j = open_ok(tmp.path());
    EXPECT_EQ(j.rounds_done(), 3u);
    EXPECT_FALSE(j.finalized());
    ASSERT_THAT(j.reset(), IsOk());
  }
  RankJournal j = open_ok(tmp.path());
  EXPECT_FALSE(j.created());
  EXPECT_EQ(j.rounds_done(), 0u);
}

TEST(RunIdentity, NamesTheRunAndItsSourceFiles) {
  testutil::TempDir tmp;
  const std::string src = (tmp.path() / "a.pt").string();
  { std::ofstream(src) << "abc"; }
  const std::string a = run_identity("reshard", 3, 0x1234, {src});
  EXPECT_THAT(a, ::testing::HasSubstr("ranks 3\n"));
  EXPECT_THAT(a, ::testing::HasSubstr("plan 1234\n"));
  EXPECT_NE(a, run_identity("reshard", 2, 0x1234, {src}));
  EXPECT_NE(a, run_identity("to-universal", 3, 0x1234, {src}));
  { std::ofstream(src) << "abcd"; }  // the source changed
  EXPECT_NE(a, run_identity("reshard", 3, 0x1234, {src}));
  ASSERT_THAT(write_run_identity(tmp.path().string(), a, false), IsOk());
  EXPECT_EQ(read_run_identity(tmp.path().string()), a);
  EXPECT_EQ(read_run_identity((tmp.path() / "none").string()), "");
}

}  // namespace
}  // namespace ucp::exec
