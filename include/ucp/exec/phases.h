// Named phases and their timings. Every collective step of a command has a stable name used in
// logs, errors and timing reports: "discover", "metadata", "plan", "create", "transfer",
// "finalize", "commit".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::exec {

/// Wall-clock seconds per phase on this rank, in first-use order.
class PhaseTimer {
 public:
  /// Adds the time since the last mark (or construction) to `phase`.
  void mark(const std::string& phase);
  const std::vector<std::pair<std::string, double>>& phases() const { return phases_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, double>> phases_;
};

/// Collective: max over ranks of each phase's seconds and of peak RSS; printed by rank 0 as a
/// table and returned as JSON text (for bench/).
std::string report_timings(comm::Communicator& comm, const PhaseTimer& timer, std::uint64_t bytes_written_total);

/// Peak resident set size of this process, in bytes (getrusage).
std::uint64_t peak_rss_bytes();

/// Collective: compares every rank's plan digest; Internal (naming the first rank that differs) if
/// the ranks computed different plans. All ranks must hold the very same plan before a byte moves.
base::Status agree_on_digest(comm::Communicator& comm, std::uint64_t digest);

}  // namespace ucp::exec
