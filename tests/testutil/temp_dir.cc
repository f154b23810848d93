#include "testutil/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>  // mkdtemp

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

namespace ucp::testutil {

namespace {

std::filesystem::path make_unique_dir() {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) {
    ADD_FAILURE() << "TempDir: no temporary directory: " << ec.message();
    return {};
  }
  std::string pattern = (base / "ucp-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "TempDir: mkdtemp('" << pattern << "') failed: " << std::strerror(errno);
    return {};
  }
  return pattern;
}

void remove_dir(const std::filesystem::path& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  // A failure here would not make any test wrong; report it without failing the test.
  if (ec) std::fprintf(stderr, "TempDir: could not remove '%s': %s\n", path.c_str(), ec.message().c_str());
}

}  // namespace

TempDir::TempDir() : path_(make_unique_dir()) {}
TempDir::~TempDir() { remove_dir(path_); }

CollectiveTempDir::CollectiveTempDir(comm::Communicator& comm) : comm_(comm) {
  std::vector<std::byte> bytes;
  if (comm_.rank() == 0) {
    const std::string p = make_unique_dir().string();
    bytes.resize(p.size());
    std::memcpy(bytes.data(), p.data(), p.size());
  }
  // The broadcast also orders creation before use: no rank sees the path before rank 0 made it.
  base::Status s = comm_.broadcast(bytes, 0);
  if (!s.ok()) {
    ADD_FAILURE() << "CollectiveTempDir: broadcast failed: " << s.to_string();
    return;
  }
  if (bytes.empty()) {
    if (comm_.rank() != 0) ADD_FAILURE() << "CollectiveTempDir: rank 0 could not create the directory";
    return;
  }
  path_ = std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

CollectiveTempDir::~CollectiveTempDir() {
  // Nobody may still be using the directory when rank 0 removes it.
  base::Status s = comm_.barrier();
  if (!s.ok()) ADD_FAILURE() << "CollectiveTempDir: barrier failed: " << s.to_string();
  if (comm_.rank() == 0) remove_dir(path_);
}

}  // namespace ucp::testutil
