// write_small_file: creates, replaces by rename (never an empty or half-written file in place),
// leaves a file that already holds the text alone, and reports a failure naming the file.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ucp/exec/file_io.h"

namespace ucp::exec {
namespace {

namespace fs = std::filesystem;

class WriteSmallFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ucp-small-file-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static ino_t inode(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_ino;
  }
  // Nothing but `names` in the folder (no temporary file left behind).
  void expect_only(std::initializer_list<std::string> names) const {
    std::vector<std::string> got;
    for (const auto& e : fs::directory_iterator(dir_)) got.push_back(e.path().filename().string());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, std::vector<std::string>(names));
  }

  fs::path dir_;
};

TEST_F(WriteSmallFile, CreatesThenReplacesByRename) {
  const fs::path p = dir_ / "latest_universal";
  ASSERT_TRUE(write_small_file(p.string(), "global_step100_universal").ok());
  EXPECT_EQ(read(p), "global_step100_universal");
  const ino_t first = inode(p);
  ASSERT_TRUE(write_small_file(p.string(), "out").ok());  // shorter: nothing of the old text stays
  EXPECT_EQ(read(p), "out");
  EXPECT_NE(inode(p), first) << "replaced in place, not renamed over";
  expect_only({"latest_universal"});
}

TEST_F(WriteSmallFile, SameTextLeavesTheFileAlone) {
  const fs::path p = dir_ / "latest";
  ASSERT_TRUE(write_small_file(p.string(), "global_step3").ok());
  const ino_t first = inode(p);
  ASSERT_TRUE(write_small_file(p.string(), "global_step3").ok());
  EXPECT_EQ(inode(p), first);
  EXPECT_EQ(read(p), "global_step3");
  // A prefix or an extension of the text is a different text.
  ASSERT_TRUE(write_small_file(p.string(), "global_step").ok());
  EXPECT_EQ(read(p), "global_step");
  ASSERT_TRUE(write_small_file(p.string(), "global_step30").ok());
  EXPECT_EQ(read(p), "global_step30");
  ASSERT_TRUE(write_small_file(p.string(), "").ok());
  EXPECT_EQ(read(p), "");
  expect_only({"latest"});
}

TEST_F(WriteSmallFile, FailureNamesTheFileAndLeavesNothing) {
  // A folder where the file should be: the rename fails (EISDIR), after the temporary was written.
  const fs::path p = dir_ / "latest";
  fs::create_directories(p / "inside");
  const base::Status s = write_small_file(p.string(), "global_step3");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(p.string()), std::string::npos) << s.message();
  expect_only({"latest"});
  EXPECT_TRUE(fs::is_directory(p));
}

}  // namespace
}  // namespace ucp::exec
