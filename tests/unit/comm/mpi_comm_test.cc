// What can be checked about mpi_comm.h without MPI_Init: build flags and launcher detection.
#include "ucp/comm/mpi_comm.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace ucp::comm {
namespace {

constexpr const char* kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID"};

// Clears the launcher variables for one test and restores them afterwards.
class LauncherEnv : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* var : kLauncherVars) {
      const char* v = std::getenv(var);
      saved_.push_back(v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(var);
    }
  }
  void TearDown() override {
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i]) {
        setenv(kLauncherVars[i], saved_[i]->c_str(), 1);
      } else {
        unsetenv(kLauncherVars[i]);
      }
    }
  }

 private:
  std::vector<std::optional<std::string>> saved_;
};

TEST_F(LauncherEnv, NotLaunchedWithoutLauncherVariables) { EXPECT_FALSE(launched_by_mpi_launcher()); }

TEST_F(LauncherEnv, EachLauncherVariableIsRecognised) {
  for (const char* var : kLauncherVars) {
    setenv(var, "0", 1);
    EXPECT_TRUE(launched_by_mpi_launcher()) << var;
    unsetenv(var);
  }
}

TEST(MpiComm, BuiltWithMpi) { EXPECT_TRUE(mpi_available()); }

TEST(MpiComm, NoCommunicatorBeforeMpiInit) { EXPECT_EQ(make_mpi_world(), nullptr); }

}  // namespace
}  // namespace ucp::comm
