// The one-rank communicator: collectives degenerate to local copies, but argument checks match
// MpiComm's so a plan bug shows up in single-process tests too.
#include "ucp/comm/self_comm.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "ucp/base/checked_math.h"

namespace ucp::comm {

using base::Status;

namespace {

Status check_range(std::string_view what, std::uint64_t offset, std::uint64_t count, std::size_t span_size) {
  auto end = base::checked_add(offset, count);
  if (!end || *end > span_size) {
    return base::internal_error("all_to_all_v: " + std::string(what) + " range [" + std::to_string(offset) +
                                ", +" + std::to_string(count) + ") runs past the buffer (size " +
                                std::to_string(span_size) + ")");
  }
  return Status();
}

}  // namespace

Status SelfComm::barrier() noexcept { return Status(); }

Status SelfComm::broadcast(std::vector<std::byte>& /*data*/, int root) noexcept {
  if (root != 0) return base::internal_error("broadcast: root " + std::to_string(root) + " out of range (size 1)");
  return Status();
}

base::Result<std::vector<std::vector<std::byte>>> SelfComm::all_gather(std::span<const std::byte> mine) noexcept {
  try {
    std::vector<std::vector<std::byte>> out(1);
    out[0].assign(mine.begin(), mine.end());
    return out;
  } catch (const std::bad_alloc&) {
    return base::resource_exhausted("all_gather: out of memory copying " + std::to_string(mine.size()) + " bytes");
  }
}

Status SelfComm::all_reduce_max(std::span<std::uint64_t> /*values*/) noexcept { return Status(); }
Status SelfComm::all_reduce_sum(std::span<std::uint64_t> /*values*/) noexcept { return Status(); }

Status SelfComm::all_to_all_v(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                              std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                              std::span<const std::uint64_t> recv_counts,
                              std::span<const std::uint64_t> recv_offsets) noexcept {
  if (send_counts.size() != 1 || send_offsets.size() != 1 || recv_counts.size() != 1 || recv_offsets.size() != 1) {
    return base::internal_error("all_to_all_v: counts/offsets must have one entry per rank (1), got " +
                                std::to_string(send_counts.size()) + "/" + std::to_string(send_offsets.size()) + "/" +
                                std::to_string(recv_counts.size()) + "/" + std::to_string(recv_offsets.size()));
  }
  if (send_counts[0] != recv_counts[0]) {
    return base::internal_error("all_to_all_v: rank 0 sends " + std::to_string(send_counts[0]) +
                                " bytes to rank 0, which expects " + std::to_string(recv_counts[0]));
  }
  UCP_RETURN_IF_ERROR(check_range("send", send_offsets[0], send_counts[0], send.size()));
  UCP_RETURN_IF_ERROR(check_range("recv", recv_offsets[0], recv_counts[0], recv.size()));
  if (send_counts[0] > 0) {
    // memmove: callers may legitimately pass overlapping send/recv views of one buffer.
    std::memmove(recv.data() + recv_offsets[0], send.data() + send_offsets[0], send_counts[0]);
  }
  return Status();
}

void SelfComm::abort(int exit_code) noexcept { std::_Exit(exit_code); }

}  // namespace ucp::comm
