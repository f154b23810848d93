#include "zstd_items.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#ifdef UCP_HAVE_ZSTD
#include <zstd.h>
#endif

namespace ucp::format::dcp {
using base::Result;
using base::Status;

namespace {

// Decoded items are sized by the stream, not by anything we trust: refuse an item that expands
// past this (a zstd bomb), naming the limit.
constexpr std::uint64_t kMaxDecodedItem = 1ull << 40;

// Scratch descriptors live until the process ends: their /proc/self/fd paths are source paths.
std::mutex& scratch_mutex() {
  static std::mutex m;
  return m;
}
std::vector<int>& scratch_fds() {
  static std::vector<int> fds;
  return fds;
}

// An unlinked file in $TMPDIR (or /tmp), open read-write; the kernel frees it when we exit.
Result<int> scratch_file(const std::string& where) {
  const char* dir = std::getenv("TMPDIR");
  std::string pattern = std::string(dir && *dir ? dir : "/tmp") + "/ucp-dcp-item-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) return base::unavailable(where + ": cannot create a scratch file in " + pattern + ": " + std::strerror(errno));
  ::unlink(pattern.c_str());
  return fd;
}

Status write_all(int fd, const void* data, std::size_t n, const std::string& where) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return base::unavailable(where + ": writing the decoded item to a scratch file: " + std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

#ifdef UCP_HAVE_ZSTD
Status decode_zstd(std::span<const std::byte> in, int fd, const std::string& where) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!ctx) return base::resource_exhausted(where + ": cannot create a zstd decoder");
  // Window sizes beyond 2^27 need an explicit opt-in; zstandard's default writer stays below it,
  // and refusing larger ones bounds the decoder's memory.
  ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, 27);
  std::vector<char> out(ZSTD_DStreamOutSize());
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  std::uint64_t total = 0;
  std::size_t last = 1;
  while (src.pos < src.size || last != 0) {
    ZSTD_outBuffer dst{out.data(), out.size(), 0};
    last = ZSTD_decompressStream(ctx.get(), &dst, &src);
    if (ZSTD_isError(last))
      return base::data_loss(where + ": corrupt zstd stream (" + ZSTD_getErrorName(last) + ")");
    total += dst.pos;
    if (total > kMaxDecodedItem) return base::data_loss(where + ": the zstd stream expands past 1 TiB");
    UCP_RETURN_IF_ERROR(write_all(fd, out.data(), dst.pos, where));
    // All input consumed, output not full, frame not finished: the decoder has nothing left to give.
    if (src.pos == src.size && last != 0 && dst.pos < dst.size)
      return base::data_loss(where + ": the zstd stream is truncated (" + std::to_string(in.size()) + " bytes)");
  }
  return {};
}
#endif

Result<std::shared_ptr<const MappedFile>> decode_one(const std::shared_ptr<const MappedFile>& in, const std::string& transform,
                                                     const std::string& where) {
  if (transform != kZstdTransform)
    return base::unimplemented(where + " is stored with transform '" + transform + "'; only '" + kZstdTransform +
                               "' can be undone");
#ifdef UCP_HAVE_ZSTD
  UCP_ASSIGN_OR_RETURN(const int fd, scratch_file(where));
  {
    std::lock_guard<std::mutex> lock(scratch_mutex());
    scratch_fds().push_back(fd);
  }
  UCP_RETURN_IF_ERROR(decode_zstd(in->bytes(), fd, where));
  return MappedFile::open("/proc/self/fd/" + std::to_string(fd));
#else
  (void)in;
  return base::unimplemented(where + " is stored with transform '" + transform +
                             "'; this ucp-reshard was built without libzstd (install libzstd-dev and rebuild)");
#endif
}

}  // namespace

Result<std::shared_ptr<const MappedFile>> undo_transforms(std::shared_ptr<const MappedFile> item,
                                                          const std::vector<std::string>& transforms,
                                                          const std::string& where) {
  for (auto it = transforms.rbegin(); it != transforms.rend(); ++it) {
    UCP_ASSIGN_OR_RETURN(item, decode_one(item, *it, where));
  }
  return item;
}

}  // namespace ucp::format::dcp
