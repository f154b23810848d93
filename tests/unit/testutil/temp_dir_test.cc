#include "testutil/temp_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ucp/comm/self_comm.h"

namespace ucp::testutil {
namespace {

namespace fs = std::filesystem;

TEST(TempDir, CreatesUniqueDirectoriesAndRemovesThemWithContents) {
  fs::path first, second;
  {
    TempDir a, b;
    first = a.path();
    second = b.path();
    ASSERT_TRUE(fs::is_directory(first));
    ASSERT_TRUE(fs::is_directory(second));
    EXPECT_NE(first, second);
    EXPECT_EQ(first.parent_path(), fs::temp_directory_path());
    EXPECT_EQ(a / "x", first / "x");
    fs::create_directories(a / "sub" / "deeper");
    std::ofstream(a / "sub" / "deeper" / "file.bin") << "data";
  }
  EXPECT_FALSE(fs::exists(first));
  EXPECT_FALSE(fs::exists(second));
}

TEST(CollectiveTempDir, WorksOverSelfComm) {
  comm::SelfComm comm;
  fs::path p;
  {
    CollectiveTempDir dir(comm);
    p = dir.path();
    ASSERT_TRUE(fs::is_directory(p));
    std::ofstream(dir / "f") << "x";
  }
  EXPECT_FALSE(fs::exists(p));
}

}  // namespace
}  // namespace ucp::testutil
