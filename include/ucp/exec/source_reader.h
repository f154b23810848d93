// Reading a plan's source runs on one rank: each source file this rank reads is opened once, and
// each run is pread into the caller's buffer, cast to the output dtype through a bounded bounce
// buffer when the dtypes differ. Shared by every executor (file outputs, HDF5).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/plan/fp32_plan.h"

namespace ucp::exec {

class SourceReader {
 public:
  explicit SourceReader(const std::vector<std::string>& source_paths) : paths_(source_paths) {}
  ~SourceReader();
  SourceReader(const SourceReader&) = delete;
  SourceReader& operator=(const SourceReader&) = delete;

  /// Opens every source `rank` reads in `plan`. Returns the most output bytes it reads in one
  /// round (what its read buffer must hold).
  base::Result<std::uint64_t> open_for(const plan::Fp32Plan& plan, int rank);

  /// Reads transfer `x` (opened by open_for) into `dst`: exactly x.out_bytes() bytes.
  base::Status read(const plan::Transfer& x, std::byte* dst);

 private:
  const std::vector<std::string>& paths_;
  std::map<std::uint32_t, int> fds_;  // source file index -> fd
  std::unique_ptr<std::byte[]> bounce_;
};

}  // namespace ucp::exec
