// Moving bytes between ranks, behind one interface: MPI on CPU (mpi_comm.h), a single-process
// stand-in for tests and one-rank runs (self_comm.h), NCCL later. Knows nothing about plans.
//
// Every method is collective over the communicator: all ranks call it, in the same order, with
// consistent sizes. Methods are noexcept and report failures as Status: kUnavailable when the
// transport fails; kInternal when the arguments break the contract (a bug in the caller's plan:
// wrong root, counts that do not fit the buffers or disagree between ranks), detected so that
// every rank returns an error rather than some hanging; kResourceExhausted when a receive buffer
// cannot be allocated (again on every rank).
//
// When a rank may call MPI_Abort instead of returning: only when it cannot reach the next agree()
// point — an exception escaping main(), an NCCL asynchronous error or timeout (after
// ncclCommAbort), or an MPI failure in the middle of a collective. Everything else is reported
// through agree() so that every rank prints the same error and exits with the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/status.h"

namespace ucp::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "MPI (Open MPI v4.1.4)", "self".
  virtual std::string description() const = 0;

  /// Collective. Blocks until every rank has arrived.
  virtual base::Status barrier() noexcept = 0;
  /// Collective. Replaces `data` on every rank with rank `root`'s bytes (sizes may differ before).
  virtual base::Status broadcast(std::vector<std::byte>& data, int root) noexcept = 0;
  /// Collective. Every rank contributes `mine`; result[r] is rank r's contribution (sizes may differ).
  virtual base::Result<std::vector<std::vector<std::byte>>> all_gather(std::span<const std::byte> mine) noexcept = 0;
  /// Collective. Element-wise max / sum of 64-bit unsigned values across ranks, in place (the sum
  /// wraps modulo 2^64, as MPI's does: keep summed values small enough).
  virtual base::Status all_reduce_max(std::span<std::uint64_t> values) noexcept = 0;
  virtual base::Status all_reduce_sum(std::span<std::uint64_t> values) noexcept = 0;
  /// Collective all-to-all-v: rank r sends send[send_offsets[d], +send_counts[d]) to rank d and
  /// receives recv_counts[s] bytes from each s at recv_offsets[s]. Counts/offsets are in bytes,
  /// one entry per rank, and must agree pairwise (what r sends to d is what d expects from r).
  /// `send` and `recv` must not overlap (MPI forbids aliased buffers).
  virtual base::Status all_to_all_v(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                                    std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                                    std::span<const std::uint64_t> recv_counts,
                                    std::span<const std::uint64_t> recv_offsets) noexcept = 0;

  /// Last resort for a rank that cannot reach the next agreement point (see file comment).
  [[noreturn]] virtual void abort(int exit_code) noexcept = 0;
};

/// Outcome of agree(): the same on every rank.
struct Agreement {
  base::Status status;   ///< OK if every rank was OK; else the first failing rank's code and a summary.
  int failed_ranks = 0;  ///< Ranks that reported an error; 0 when the exchange itself failed.
};

/// Collective. Ends a named phase: all-gathers each rank's (code, message) and returns the same
/// verdict everywhere. If the exchange itself fails, returns kUnavailable (and that rank's verdict
/// may then differ from the others': the communicator is unusable anyway).
///
/// Message format (exact, tested):
///   "step '<step>' failed on <K>/<N> ranks: <group>; <group>; ..."
/// where each group is "<ranks>: <CodeName>: <message>" for the ranks whose code and message are
/// identical, groups ordered by their lowest rank, and <ranks> is "rank 2" or "ranks 0-3" or
/// "ranks 0,2,5-7". At most kAgreeMaxGroups groups are listed, then "; ... and <M> more failing
/// ranks". Each rank's message is cut to at most kAgreeMaxMessageBytes bytes (at a UTF-8
/// boundary, ending in " [truncated]"). The status code is the code of the lowest failing rank.
Agreement agree(Communicator& comm, std::string_view step, const base::Status& local) noexcept;

inline constexpr std::size_t kAgreeMaxMessageBytes = 1000;
inline constexpr std::size_t kAgreeMaxGroups = 8;

/// "rank 3", "ranks 0-3", "ranks 0,2,5-7": how messages name a set of ranks. `ranks` ascending.
std::string format_rank_list(std::span<const int> ranks);

/// The pure part of agree(): the verdict from every rank's status (index = rank), as described
/// above. Exposed for tests and for transports that gather statuses their own way.
Agreement summarize_agreement(std::string_view step, std::span<const base::Status> per_rank);

/// The communicator for this process. Under a launcher (launched_by_mpi_launcher(), mpi_comm.h)
/// it initialises MPI (MPI_THREAD_FUNNELED) unless it already is and returns an MPI communicator,
/// falling back to SelfComm only when MPI_Init_thread fails. A process started on its own is one
/// rank and gets SelfComm without initialising MPI, whose singleton start-up costs ~0.5 s.
std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv);

/// For a library that takes an MPI communicator itself (parallel HDF5): a pointer to an MPI_Comm
/// naming MPI_COMM_WORLD, opaque so that callers need no mpi.h (MPI stays inside comm/). A run of
/// one rank started without a launcher initialises MPI first. FailedPrecondition when MPI is not
/// initialised; Internal when the world is not `size` ranks with this process as `rank` (so a
/// future sub-communicator cannot silently write with the wrong group of ranks).
base::Result<const void*> world_mpi_comm_handle(int size, int rank);

/// The MPI library's version, first line ("Open MPI v4.1.4"); callable before MPI_Init.
std::string mpi_library_version();

/// Finalises MPI if it was initialised. Safe to call always.
void finalize_world();

}  // namespace ucp::comm
