#include "ucp/exec/tensor_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "ucp/base/convert.h"
#include "ucp/exec/file_io.h"

namespace ucp::exec {
using base::Result;
using base::Status;

SourceFiles::SourceFiles(std::vector<std::string> paths) : paths_(std::move(paths)), fds_(paths_.size(), -1) {}

SourceFiles::~SourceFiles() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

Result<int> SourceFiles::fd(std::uint32_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index >= paths_.size())
    return base::internal_error("source file " + std::to_string(index) + " out of range (" +
                                std::to_string(paths_.size()) + " files)");
  if (fds_[index] < 0) {
    const int fd = ::open(paths_[index].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_error("opening", paths_[index], errno);
    fds_[index] = fd;
  }
  return fds_[index];
}

namespace {

// Pieces whose dtype differs from the output go through this much staging at a time.
constexpr std::uint64_t kStagingBytes = 8ull << 20;

}  // namespace

namespace {

// Reads `numel` elements of `src_dtype` at byte `offset` of `fd` into `dst` as `out_dtype`.
Status read_run(int fd, const std::string& path, std::uint64_t offset, std::uint64_t numel, base::DType src_dtype,
                std::byte* dst, base::DType out_dtype, std::vector<std::byte>& staging) {
  if (src_dtype == out_dtype) return pread_full(fd, dst, numel * base::dtype_size(out_dtype), offset, path);
  const std::size_t in_size = base::dtype_size(src_dtype), out_size = base::dtype_size(out_dtype);
  const std::uint64_t per_step = std::max<std::uint64_t>(1, kStagingBytes / in_size);
  staging.resize(static_cast<std::size_t>(std::min(per_step, numel) * in_size));
  for (std::uint64_t done = 0; done < numel;) {
    const std::uint64_t n = std::min(per_step, numel - done);
    UCP_RETURN_IF_ERROR(pread_full(fd, staging.data(), n * in_size, offset + done * in_size, path));
    base::convert_elements(src_dtype, staging.data(), out_dtype, dst + done * out_size, static_cast<std::size_t>(n));
    done += n;
  }
  return {};
}

}  // namespace

Status read_logical_tensor(const plan::LogicalTensor& lt, SourceFiles& files, std::span<std::byte> out,
                           base::DType out_dtype) {
  if (lt.role == plan::TensorRole::kAlias)
    return base::invalid_argument("'" + lt.name + "' is an alias: read the tensor it shares values with");
  const std::size_t out_size = base::dtype_size(out_dtype);
  const std::uint64_t numel = lt.numel();
  if (out.size() != numel * out_size)
    return base::invalid_argument("'" + lt.name + "': output buffer is " + std::to_string(out.size()) +
                                  " bytes, expected " + std::to_string(numel * out_size));
  std::vector<std::byte> staging;
  return format::for_each_run(lt, [&](const format::TensorLocation& src, std::uint64_t dst) -> Status {
    if (src.dtype != out_dtype && !base::can_convert(src.dtype, out_dtype))
      return base::unimplemented("'" + lt.name + "': cannot convert " + std::string(base::dtype_name(src.dtype)) + " to " +
                                 std::string(base::dtype_name(out_dtype)));
    UCP_ASSIGN_OR_RETURN(const int fd, files.fd(src.file));
    return read_run(fd, files.paths()[src.file], src.offset, src.numel, src.dtype, out.data() + dst * out_size, out_dtype,
                    staging);
  });
}

}  // namespace ucp::exec
