#include "ucp/exec/source_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "ucp/base/convert.h"
#include "ucp/exec/file_io.h"

namespace ucp::exec {
using base::Status;

SourceReader::~SourceReader() {
  for (auto& [f, fd] : fds_) ::close(fd);
}

base::Result<std::uint64_t> SourceReader::open_for(const plan::FilePlan& plan, int rank, Buffered buffered, int lanes) {
  std::uint64_t max_round = 0;
  bool converts = false, streams = false;
  for (const auto& round : plan.rounds) {
    std::uint64_t bytes = 0;
    for (const plan::Transfer& x : round) {
      if (x.reader != rank) continue;
      if (buffered == Buffered::kSentOnly && x.writer == rank) streams = true;
      else bytes += x.out_bytes();
      converts = converts || x.src.dtype != x.out_dtype;
      if (fds_.count(x.src.file)) continue;
      const std::string& path = paths_.at(x.src.file);
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return io_error("opening", path, errno);
      fds_[x.src.file] = fd;
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    max_round = std::max(max_round, bytes);
  }
  if (converts && !bounce_) bounce_ = std::make_unique_for_overwrite<std::byte[]>(kStreamChunkBytes);
  if (streams) lanes_.resize(static_cast<std::size_t>(std::clamp(lanes, 1, kMaxStreamLanes)));
  for (Lane& lane : lanes_) {
    if (converts && !lane.bounce) lane.bounce = std::make_unique_for_overwrite<std::byte[]>(kStreamChunkBytes);
    if (!lane.chunk) lane.chunk = std::make_unique_for_overwrite<std::byte[]>(kStreamChunkBytes);
  }
  return max_round;
}

std::uint64_t SourceReader::slab_elements(const plan::Transfer& x) {
  const std::size_t widest = std::max(base::dtype_size(x.src.dtype), base::dtype_size(x.out_dtype));
  return kStreamChunkBytes / widest;
}

Status SourceReader::read(const plan::Transfer& x, std::byte* dst) {
  const std::string& path = paths_.at(x.src.file);
  const int fd = fds_.at(x.src.file);
  if (x.src.dtype == x.out_dtype) return pread_full(fd, dst, x.src.nbytes(), x.src.offset, path);
  // Convert through the bounce buffer, one slab at a time.
  const std::size_t in_size = base::dtype_size(x.src.dtype), out_size = base::dtype_size(x.out_dtype);
  const std::uint64_t slab = slab_elements(x);
  for (std::uint64_t done = 0; done < x.src.numel; done += slab) {
    const std::uint64_t n = std::min(slab, x.src.numel - done);
    UCP_RETURN_IF_ERROR(pread_full(fd, bounce_.get(), n * in_size, x.src.offset + done * in_size, path));
    base::convert_elements(x.src.dtype, bounce_.get(), x.out_dtype, dst + done * out_size, n);
  }
  return {};
}

Status SourceReader::stream(const plan::Transfer& x, const std::function<Status(std::span<const std::byte>)>& sink,
                            int lane) {
  const std::string& path = paths_.at(x.src.file);
  Lane& buffers = lanes_.at(static_cast<std::size_t>(lane));
  const int fd = fds_.at(x.src.file);
  const std::size_t in_size = base::dtype_size(x.src.dtype), out_size = base::dtype_size(x.out_dtype);
  const std::uint64_t slab = slab_elements(x);
  for (std::uint64_t done = 0; done < x.src.numel; done += slab) {
    const std::uint64_t n = std::min(slab, x.src.numel - done);
    const std::uint64_t offset = x.src.offset + done * in_size;
    if (x.src.dtype == x.out_dtype) {
      UCP_RETURN_IF_ERROR(pread_full(fd, buffers.chunk.get(), n * in_size, offset, path));
    } else {
      UCP_RETURN_IF_ERROR(pread_full(fd, buffers.bounce.get(), n * in_size, offset, path));
      base::convert_elements(x.src.dtype, buffers.bounce.get(), x.out_dtype, buffers.chunk.get(), n);
    }
    UCP_RETURN_IF_ERROR(sink(std::span<const std::byte>(buffers.chunk.get(), n * out_size)));
  }
  return {};
}

}  // namespace ucp::exec
