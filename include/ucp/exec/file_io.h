// POSIX file I/O for the executors, with the errors every command reports the same way: the path,
// what was being done, and for a full disk or a file size limit kResourceExhausted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ucp/base/status.h"

namespace ucp::exec {

/// `what` ("reading", "creating", ...) on `path` failed with `err` (an errno value).
base::Status io_error(const std::string& what, const std::string& path, int err);

/// pread / pwrite of exactly `len` bytes (EINTR retried, short transfers continued). A read past
/// the end is kDataLoss ("'path' is truncated ...").
base::Status pread_full(int fd, std::byte* dst, std::uint64_t len, std::uint64_t offset, const std::string& path);
base::Status pwrite_full(int fd, const std::byte* src, std::uint64_t len, std::uint64_t offset, const std::string& path);

/// A plain byte copy through a 1 MiB buffer (bounded memory; errno kept for the message, which
/// std::filesystem::copy_file loses: EFBIG comes back as EIO there). `dst` must not exist.
base::Status copy_file(const std::string& src, const std::string& dst);

/// Creates or atomically replaces `path` holding `text` (small files: DeepSpeed's `latest`, HF
/// indexes): written to `path` + ".ucp-tmp", then renamed over it. A file that already holds
/// exactly `text` is left as it is.
base::Status write_small_file(const std::string& path, const std::string& text);

}  // namespace ucp::exec
