#include "ucp/exec/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace ucp::exec {
using base::Status;

Status io_error(const std::string& what, const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT)
    return base::resource_exhausted("no space left on device while " + what + " '" + path + "'");
  if (err == EFBIG)
    return base::resource_exhausted("file size limit exceeded while " + what + " '" + path + "' (EFBIG)");
  return base::unavailable(what + " '" + path + "' failed: " + std::strerror(err));
}

Status pread_full(int fd, std::byte* dst, std::uint64_t len, std::uint64_t offset, const std::string& path) {
  while (len > 0) {
    const ssize_t n = ::pread(fd, dst, std::min<std::uint64_t>(len, 1u << 30), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("reading", path, errno);
    }
    if (n == 0)
      return base::data_loss("'" + path + "' is truncated: tensor data expected at offset " + std::to_string(offset) +
                             " is past the end of the file");
    dst += n;
    len -= static_cast<std::uint64_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Status pwrite_full(int fd, const std::byte* src, std::uint64_t len, std::uint64_t offset, const std::string& path) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, src, std::min<std::uint64_t>(len, 1u << 30), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("writing", path, errno);
    }
    src += n;
    len -= static_cast<std::uint64_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Status copy_file(const std::string& src, const std::string& dst) {
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return io_error("opening", src, errno);
  const int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return io_error("creating", dst, err);
  }
  // In the kernel when the filesystem can (no trip through user space); otherwise through a
  // buffer small enough to stay in cache between the read and the write.
  Status status;
  bool in_kernel = true;
  for (;;) {
    const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, std::size_t{1} << 30, 0);
    if (n > 0) continue;
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) {
      in_kernel = false;  // both file offsets stand after what was copied: the loop goes on from there
      break;
    }
    status = io_error("copying '" + src + "' to", dst, errno);
    break;
  }
  std::vector<char> buf(in_kernel ? 0 : 256u << 10);
  while (status.ok() && !in_kernel) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = io_error("reading", src, errno);
    if (n <= 0) break;
    for (ssize_t done = 0; done < n && status.ok();) {
      const ssize_t w = ::write(out, buf.data() + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) status = io_error("copying '" + src + "' to", dst, errno);
      else done += w;
    }
  }
  ::close(in);
  if (::close(out) != 0 && status.ok()) status = io_error("closing", dst, errno);
  return status;
}

namespace {

// True if `path` is a regular file holding exactly `text`.
bool holds_exactly(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string got(text.size() + 1, '\0');  // one more, to see a longer file
  const ssize_t n = ::pread(fd, got.data(), got.size(), 0);
  ::close(fd);
  return n == static_cast<ssize_t>(text.size()) && got.compare(0, text.size(), text) == 0;
}

}  // namespace

Status write_small_file(const std::string& path, const std::string& text) {
  // Any metadata change to the folder right after a conversion can wait for ext4's journal, which
  // waits for GBs of write-back: truncating `latest_universal` in place took 2.5 s at 505M, and
  // renaming over it 0.1-0.7 s. A re-run into the same place finds the same text and writes nothing.
  if (holds_exactly(path, text)) return {};
  // Written beside and renamed over: a reader (DeepSpeed looking for `latest`) sees the old text or
  // the new, never an empty file.
  const std::string temp = path + ".ucp-tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("creating", temp, errno);
  Status status = pwrite_full(fd, reinterpret_cast<const std::byte*>(text.data()), text.size(), 0, temp);
  if (::close(fd) != 0 && status.ok()) status = io_error("closing", temp, errno);
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) status = io_error("renaming '" + temp + "' to", path, errno);
  if (!status.ok()) ::unlink(temp.c_str());
  return status;
}

}  // namespace ucp::exec
