// A read-only memory mapping of a whole file: the byte source every reader works on.
// Readers hand out spans into the mapping, so reading a tensor copies nothing until the caller copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"

namespace ucp::format {

class MappedFile {
 public:
  /// Maps `path` read-only. An empty file maps to an empty span. NotFound if it does not exist.
  static base::Result<std::shared_ptr<const MappedFile>> open(const std::string& path);
  /// An in-memory stand-in that owns `bytes` and reports `name` as its path: lets readers parse
  /// buffers (fuzzers, tests, data received over the network) through the same code as files.
  static std::shared_ptr<const MappedFile> from_bytes(std::string name, std::vector<std::byte> bytes);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  /// Hints the kernel that [offset, offset+len) will be read soon / sequentially. Out-of-range
  /// parts are ignored; a no-op for in-memory files.
  void advise_willneed(std::uint64_t offset, std::uint64_t len) const;

 private:
  MappedFile(std::string path, const std::byte* data, std::size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  MappedFile(std::string path, std::vector<std::byte> owned);
  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;            ///< data_ came from mmap and is munmapped by the destructor.
  std::vector<std::byte> owned_;   ///< Backing store of from_bytes() files.
};

}  // namespace ucp::format
