// The one-rank communicator: every collective is a local copy. Used by unit tests and by runs
// without a launcher.
#pragma once

#include "ucp/comm/communicator.h"

namespace ucp::comm {

class SelfComm final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "self (1 rank, no MPI)"; }
  base::Status barrier() noexcept override;
  base::Status broadcast(std::vector<std::byte>& data, int root) noexcept override;
  base::Result<std::vector<std::vector<std::byte>>> all_gather(std::span<const std::byte> mine) noexcept override;
  base::Status all_reduce_max(std::span<std::uint64_t> values) noexcept override;
  base::Status all_reduce_sum(std::span<std::uint64_t> values) noexcept override;
  base::Status all_to_all_v(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                            std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                            std::span<const std::uint64_t> recv_counts,
                            std::span<const std::uint64_t> recv_offsets) noexcept override;
  [[noreturn]] void abort(int exit_code) noexcept override;
};

}  // namespace ucp::comm
