// A torch file inside another file (the HDF5 universal checkpoint embeds them as byte datasets):
// torch_file_bytes gives exactly the bytes write_torch_file writes, and a TorchFile parsed from a
// MappedFile::view of a larger buffer resolves its storages to offsets in that buffer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "ucp/format/mapped_file.h"
#include "ucp/format/torch_file.h"

namespace ucp::format {
namespace {

namespace fs = std::filesystem;
using base::StatusCode;
using testing::HasSubstr;
using testutil::StatusIs;

const std::string kOptimFile = "/checkpoint/global_step3/zero_pp_rank_0_mp_rank_00_optim_states.pt";

TEST(TorchFileBytes, EqualsTheFileWriteTorchFileWrites) {
  auto file = TorchFile::open(testutil::deepspeed_fixture("mlp_z2_fp32_ws2") + kOptimFile);
  ASSERT_TRUE(file.ok()) << file.status().message();
  const fs::path out = fs::temp_directory_path() / ("ucp_embedded_" + std::to_string(::getpid()) + ".pt");
  ASSERT_TRUE(write_torch_file(out.string(), file->root(), {"archive", 2}).ok());
  auto bytes = torch_file_bytes(file->root(), {"archive", 2});
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_EQ(*bytes, testutil::read_file_bytes(out.string()));
  fs::remove(out);
  EXPECT_THAT(torch_file_bytes(file->root(), {"", 2}).status(), StatusIs(StatusCode::kInvalidArgument, HasSubstr("archive")));
}

TEST(MappedFileView, StoragesResolveToOffsetsInTheContainer) {
  const std::string path = testutil::deepspeed_fixture("mlp_z2_fp32_ws2") + kOptimFile;
  const std::vector<std::byte> original = testutil::read_file_bytes(path);
  auto direct = TorchFile::open(path);
  ASSERT_TRUE(direct.ok());
  // The file at offset 37 of a container with bytes after it too.
  std::vector<std::byte> container(37, std::byte{0x5a});
  container.insert(container.end(), original.begin(), original.end());
  container.resize(container.size() + 11, std::byte{0xa5});
  auto parent = MappedFile::from_bytes("container.h5", container);
  auto view = MappedFile::view(parent, 37, original.size(), "container.h5:/universal/x.pt");
  ASSERT_TRUE(view.ok()) << view.status().message();
  EXPECT_EQ((*view)->parent(), parent);
  EXPECT_EQ((*view)->offset_in_parent(), 37u);
  auto embedded = TorchFile::parse(*view);
  ASSERT_TRUE(embedded.ok()) << embedded.status().message();
  EXPECT_EQ(embedded->path(), "container.h5:/universal/x.pt");
  // Same tree; every storage sits 37 bytes further into the container than into the file.
  const auto& a = direct->root()->get("optimizer_state_dict")->get("single_partition_of_fp32_groups")->items;
  const auto& b = embedded->root()->get("optimizer_state_dict")->get("single_partition_of_fp32_groups")->items;
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& sa = *a[i]->tensor.storage;
    const auto& sb = *b[i]->tensor.storage;
    const auto off_a = sa.bytes.data() - direct->zip().file()->bytes().data();
    const auto off_b = sb.bytes.data() - parent->bytes().data();
    EXPECT_EQ(off_b, off_a + 37);
    EXPECT_TRUE(std::equal(sa.bytes.begin(), sa.bytes.end(), sb.bytes.begin(), sb.bytes.end()));
  }
}

TEST(MappedFileView, RangePastTheParentIsRefusedByName) {
  auto parent = MappedFile::from_bytes("c.h5", std::vector<std::byte>(100));
  EXPECT_THAT(MappedFile::view(parent, 90, 11, "c.h5:/universal/y.pt").status(),
              StatusIs(StatusCode::kDataLoss, HasSubstr("'c.h5:/universal/y.pt': bytes [90, +11) run past the end of 'c.h5' (size 100)")));
  EXPECT_THAT(MappedFile::view(parent, 101, 0, "z").status(), StatusIs(StatusCode::kDataLoss, HasSubstr("'z'")));
  EXPECT_TRUE(MappedFile::view(parent, 100, 0, "empty").ok());
}

}  // namespace
}  // namespace ucp::format
