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
  /// Bytes [offset, offset + size) of `parent` seen as a file of its own named `name` (a file
  /// embedded in a container, e.g. a torch file stored as an HDF5 dataset). Shares the parent's
  /// mapping and keeps it alive; DataLoss naming `name` when the range runs past the parent.
  static base::Result<std::shared_ptr<const MappedFile>> view(std::shared_ptr<const MappedFile> parent,
                                                              std::uint64_t offset, std::uint64_t size,
                                                              std::string name);
  /// The file this one is a view() of (null for a file of its own) and where it starts in it.
  const std::shared_ptr<const MappedFile>& parent() const { return parent_; }
  std::uint64_t offset_in_parent() const { return offset_in_parent_; }

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
  std::shared_ptr<const MappedFile> parent_;  ///< view(): the file whose bytes these are.
  std::uint64_t offset_in_parent_ = 0;
};

}  // namespace ucp::format
