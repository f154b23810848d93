#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "ucp/comm/nccl_transport.h"

namespace {

#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL

// ncclGetVersion needs no device, so the version check runs on CPU-only CI too.
TEST(NcclInfo, VersionIsMajorMinorPatch) {
  EXPECT_TRUE(ucp::comm::nccl_built());
  const std::string v = ucp::comm::nccl_version_string();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(v, m, std::regex(R"((\d+)\.(\d+)\.(\d+))"))) << v;
  EXPECT_GE(std::stoi(m[1].str()), 2) << v;
}

TEST(NcclInfo, DeviceCountNeverFails) {
  const int n = ucp::comm::cuda_device_count();  // must return, not abort, without a GPU or driver
  EXPECT_GE(n, 0);
  if (n == 0) GTEST_SKIP() << "no CUDA device on this machine: device-side checks skipped";
  EXPECT_EQ(ucp::comm::cuda_device_count(), n);  // stable across calls
}

#else

TEST(NcclInfo, NotBuilt) { GTEST_SKIP() << "built without CUDA/NCCL (UCP_HAVE_NCCL undefined): nothing to test"; }

#endif

}  // namespace
