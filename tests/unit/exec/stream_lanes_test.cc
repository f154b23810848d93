// How many local runs a rank streams at once: its share of the CPUs it may use, within the cap.
#include <gtest/gtest.h>

#include "ucp/exec/file_plan_executor.h"
#include "ucp/exec/source_reader.h"

namespace ucp::exec {
namespace {

TEST(StreamLanes, ShareOfTheHostsCpusWithinTheCap) {
  EXPECT_EQ(stream_lanes(2, 1), 2);                 // this project's CI machine, one rank
  EXPECT_EQ(stream_lanes(2, 2), 1);                 // two ranks on two cores
  EXPECT_EQ(stream_lanes(16, 4), 4);
  EXPECT_EQ(stream_lanes(16, 8), 2);
  EXPECT_EQ(stream_lanes(64, 1), kMaxStreamLanes);  // capped: each lane holds two chunk buffers
  EXPECT_EQ(stream_lanes(1, 1), 1);                 // bound to one core (mpirun --bind-to core)
  EXPECT_EQ(stream_lanes(2, 16), 1);                // oversubscribed
  EXPECT_EQ(stream_lanes(0, 0), 1);                 // nothing known
}

}  // namespace
}  // namespace ucp::exec
