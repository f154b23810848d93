// Streaming torch.save writer for the benchmark generator: storages whose bytes are produced on
// demand, chunk by chunk, straight into the file, so a multi-GB checkpoint file is written with a
// few tens of MiB of memory. The container matches what torch 1.13 writes (data.pkl, data/<key> in
// sorted key order, version "3\n"; 64-byte aligned records, ZIP64 where needed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/value.h"

namespace ucp::bench {

/// Fills `out` with elements [first, first + out.size() / dtype_size) of a storage.
using FillFn = std::function<void(std::uint64_t first, std::span<std::byte> out)>;

/// Registry of the lazily filled storages of one file. Storages created here carry no bytes: the
/// pickle writer only needs dtype and numel; the bytes come from the FillFn when written.
class LazyStorages {
 public:
  std::shared_ptr<format::Storage> make(base::DType dtype, std::uint64_t numel, FillFn fill,
                                        std::string location = "cpu");
  const FillFn* find(const format::Storage* s) const;

 private:
  std::unordered_map<const format::Storage*, FillFn> fills_;
};

struct WriteStats {
  std::uint64_t bytes = 0;  ///< Size of the finished file.
};

/// Writes `root` as a torch.save file at `path`. Every storage in the tree must come from
/// `storages`. `chunk_bytes` bounds the buffer used to stream each record.
base::Result<WriteStats> write_lazy_torch_file(const std::string& path, const format::ValuePtr& root,
                                               const LazyStorages& storages,
                                               std::size_t chunk_bytes = 32u << 20);

}  // namespace ucp::bench
