// Scratch directories for tests: created with a unique name, removed recursively when the object
// goes away. CollectiveTempDir is the MPI-test variant: one directory shared by all ranks.
#pragma once

#include <filesystem>
#include <string_view>

#include "ucp/comm/communicator.h"

namespace ucp::testutil {

/// <temp_directory_path>/ucp-test-XXXXXX. On failure records a gtest failure and path() is empty.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Collective (constructor and destructor): rank 0 creates the directory and broadcasts its path;
/// on destruction all ranks meet at a barrier, then rank 0 removes it. Uses only the Communicator
/// interface (ucp_testutil does not link MPI). The ranks must share a file system, as they do when
/// tests run on one machine.
class CollectiveTempDir {
 public:
  explicit CollectiveTempDir(comm::Communicator& comm);
  ~CollectiveTempDir();
  CollectiveTempDir(const CollectiveTempDir&) = delete;
  CollectiveTempDir& operator=(const CollectiveTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  comm::Communicator& comm_;
  std::filesystem::path path_;
};

}  // namespace ucp::testutil
