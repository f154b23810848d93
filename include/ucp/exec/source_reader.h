// Reading a plan's source runs on one rank: each source file this rank reads is opened once, and
// each run is either pread whole into the caller's buffer (runs another rank writes: they travel
// in one exchange) or streamed in cache-sized chunks to a sink (runs this rank writes itself),
// cast to the output dtype on the way when the dtypes differ. Shared by every executor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

/// Output bytes per streamed chunk (and per conversion slab). Small enough that a chunk read into
/// the buffer is still in the CPU cache when it is checksummed and written out: through buffers
/// of several MiB, read + write cost several times more (measured in bench/README.md); within
/// plan::kConvertBounceBytes, which the planner reserves for these buffers.
inline constexpr std::size_t kStreamChunkBytes = 256u << 10;
/// Most streams one rank runs at once (each holds a chunk and a conversion buffer).
inline constexpr int kMaxStreamLanes = 4;
static_assert((1 + 2 * kMaxStreamLanes) * kStreamChunkBytes <= plan::kConvertBounceBytes);

class SourceReader {
 public:
  explicit SourceReader(const std::vector<std::string>& source_paths) : paths_(source_paths) {}
  ~SourceReader();
  SourceReader(const SourceReader&) = delete;
  SourceReader& operator=(const SourceReader&) = delete;

  /// Which of `rank`'s reads open_for sizes the buffer for.
  enum class Buffered { kEveryRead, kSentOnly };

  /// Opens every source `rank` reads in `plan`, with chunk buffers for `lanes` concurrent
  /// streams. Returns the most output bytes one round reads into the caller's buffer: every read,
  /// or (kSentOnly) only those another rank writes, the caller streaming its own.
  base::Result<std::uint64_t> open_for(const plan::FilePlan& plan, int rank, Buffered buffered = Buffered::kEveryRead,
                                       int lanes = 1);

  /// Reads transfer `x` (opened by open_for) into `dst`: exactly x.out_bytes() bytes.
  base::Status read(const plan::Transfer& x, std::byte* dst);

  /// Reads transfer `x` chunk by chunk (at most kStreamChunkBytes each, in order) and hands each
  /// to `sink`; stops at the first error, the reader's or the sink's. Streams on different lanes
  /// (< open_for's `lanes`) may run at once, on different threads; read() must not run meanwhile.
  base::Status stream(const plan::Transfer& x, const std::function<base::Status(std::span<const std::byte>)>& sink,
                      int lane = 0);

 private:
  // Elements of `x` per slab: as many as fit kStreamChunkBytes on both the source and output side.
  static std::uint64_t slab_elements(const plan::Transfer& x);

  const std::vector<std::string>& paths_;
  std::map<std::uint32_t, int> fds_;  // source file index -> fd
  std::unique_ptr<std::byte[]> bounce_;  // source bytes read() converts (kStreamChunkBytes)
  struct Lane {
    std::unique_ptr<std::byte[]> bounce;  // source bytes to convert (kStreamChunkBytes)
    std::unique_ptr<std::byte[]> chunk;   // a streamed chunk (kStreamChunkBytes)
  };
  std::vector<Lane> lanes_;
};

}  // namespace ucp::exec
