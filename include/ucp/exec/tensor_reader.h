// Reading one consolidated tensor of a source layout (plan::LogicalTensor) into memory for an
// in-process reader (the Python module's state dicts and lazy tensors). One process, no plan, no
// ranks: each run of format::for_each_run (the one walk of pieces) is pread from its source file
// (only the tensor's own bytes) and converted into the caller's buffer. pread, not
// format::read_tensor's mappings: pages read stay out of the process's RSS, so a lazy reader's
// peak memory is the tensor it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/source_layout.h"

namespace ucp::exec {

/// The source files a layout's pieces name (TensorLocation::file indexes `paths`), opened on first
/// use and kept open. Thread-safe.
class SourceFiles {
 public:
  explicit SourceFiles(std::vector<std::string> paths);
  ~SourceFiles();
  SourceFiles(const SourceFiles&) = delete;
  SourceFiles& operator=(const SourceFiles&) = delete;

  const std::vector<std::string>& paths() const { return paths_; }
  /// The open descriptor of file `index`; NotFound / io error naming the path.
  base::Result<int> fd(std::uint32_t index);

 private:
  std::vector<std::string> paths_;
  std::vector<int> fds_;
  std::mutex mutex_;
};

/// Writes every element of `lt`, converted to `out_dtype`, into `out` (exactly
/// lt.numel() * dtype_size(out_dtype) bytes, flattened in row-major order). Reads only the bytes of
/// lt's pieces. InvalidArgument for an alias (read the tensor it aliases) or a wrong buffer size;
/// Unimplemented for a conversion base::can_convert refuses; DataLoss for a truncated file.
base::Status read_logical_tensor(const plan::LogicalTensor& lt, SourceFiles& files, std::span<std::byte> out,
                                 base::DType out_dtype);


}  // namespace ucp::exec
