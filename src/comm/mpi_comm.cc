// Communicator over a duplicate of MPI_COMM_WORLD. MPI counts and displacements are int, so every
// collective has a direct path (everything fits in max_chunk_bytes) and a chunked path; which one
// runs is decided from values every rank knows, so ranks never take different paths.
#include "ucp/comm/mpi_comm.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "mpi_check.h"
#include "ucp/base/checked_math.h"

namespace ucp::comm {

using base::Status;

namespace internal {

Status mpi_error(int rc, std::string_view call_text) {
  std::string_view name = call_text.substr(0, call_text.find('('));
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  char text[MPI_MAX_ERROR_STRING + 1] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) {
    return base::unavailable(std::string(name) + " failed: MPI error code " + std::to_string(rc));
  }
  return base::unavailable(std::string(name) + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

}  // namespace internal

namespace {

// One tag for all point-to-point traffic: the communicator is private to this object, and MPI's
// non-overtaking rule keeps chunks between one pair of ranks in order.
constexpr int kAllToAllTag = 0x2a2a;

// MPI rejects some null buffers even with zero counts; empty spans may have data() == nullptr.
// Two distinct stand-ins, so an empty send and an empty receive never look like aliased buffers.
std::byte g_empty_recv[1];
const std::byte g_empty_send[1] = {};
void* nonnull(void* p) { return p != nullptr ? p : g_empty_recv; }
const void* nonnull(const void* p) { return p != nullptr ? p : g_empty_send; }

std::string library_description() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING + 1] = {};
  int len = 0;
  if (MPI_Get_library_version(version, &len) != MPI_SUCCESS) return "MPI";
  std::string_view v(version, static_cast<std::size_t>(len));
  // "Open MPI v4.1.4, package: ..." / "MPICH Version:\t4.0\n...": keep the first clause.
  v = v.substr(0, v.find_first_of(",\n"));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return "MPI (" + std::string(v) + ")";
}

class MpiComm final : public Communicator {
 public:
  MpiComm(MPI_Comm comm, int rank, int size, std::uint64_t max_chunk)
      : comm_(comm), rank_(rank), size_(size), chunk_(max_chunk), description_(library_description()) {}

  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override { return description_; }

  Status barrier() noexcept override {
    UCP_MPI_CHECK(MPI_Barrier(comm_));
    return Status();
  }

  Status broadcast(std::vector<std::byte>& data, int root) noexcept override {
    if (root < 0 || root >= size_) {
      return base::internal_error("broadcast: root " + std::to_string(root) + " out of range (size " +
                                  std::to_string(size_) + ")");
    }
    std::uint64_t n = data.size();
    UCP_MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_));
    bool allocated = true;
    if (rank_ != root) {
      try {
        data.resize(n);
      } catch (const std::bad_alloc&) {
        allocated = false;
      }
    }
    UCP_RETURN_IF_ERROR(everyone(allocated, "broadcast: out of memory receiving " + std::to_string(n) + " bytes"));
    return bcast_chunked(data.data(), n, root);
  }

  base::Result<std::vector<std::vector<std::byte>>> all_gather(std::span<const std::byte> mine) noexcept override {
    const std::size_t n = static_cast<std::size_t>(size_);
    std::uint64_t my_size = mine.size();
    std::vector<std::uint64_t> sizes(n);
    UCP_MPI_CHECK(MPI_Allgather(&my_size, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, comm_));

    std::uint64_t total = 0;
    for (std::uint64_t s : sizes) {
      auto t = base::checked_add(total, s);
      if (!t) return base::internal_error("all_gather: total size overflows 64 bits");
      total = *t;
    }
    const bool fits = total <= chunk_;

    std::vector<std::vector<std::byte>> out;
    std::vector<std::byte> packed;
    bool allocated = true;
    try {
      out.resize(n);
      for (std::size_t r = 0; r < n; ++r) out[r].resize(sizes[r]);
      if (fits) packed.resize(total);
    } catch (const std::bad_alloc&) {
      allocated = false;
    }
    UCP_RETURN_IF_ERROR(everyone(allocated, "all_gather: out of memory receiving " + std::to_string(total) + " bytes"));

    if (fits) {
      // Everything fits in int counts: one allgatherv into a packed buffer, then split.
      std::vector<int> counts(n), displs(n);
      std::uint64_t offset = 0;
      for (std::size_t r = 0; r < n; ++r) {
        counts[r] = static_cast<int>(sizes[r]);
        displs[r] = static_cast<int>(offset);
        offset += sizes[r];
      }
      UCP_MPI_CHECK(MPI_Allgatherv(nonnull(mine.data()), static_cast<int>(my_size), MPI_BYTE, nonnull(packed.data()),
                                   counts.data(), displs.data(), MPI_BYTE, comm_));
      for (std::size_t r = 0; r < n; ++r) {
        if (sizes[r] > 0) std::memcpy(out[r].data(), packed.data() + displs[r], sizes[r]);
      }
    } else {
      // Each rank broadcasts its own contribution, in chunks.
      if (my_size > 0) std::memcpy(out[static_cast<std::size_t>(rank_)].data(), mine.data(), my_size);
      for (std::size_t r = 0; r < n; ++r) {
        UCP_RETURN_IF_ERROR(bcast_chunked(out[r].data(), sizes[r], static_cast<int>(r)));
      }
    }
    return out;
  }

  Status all_reduce_max(std::span<std::uint64_t> values) noexcept override { return all_reduce(values, MPI_MAX); }
  Status all_reduce_sum(std::span<std::uint64_t> values) noexcept override { return all_reduce(values, MPI_SUM); }

  Status all_to_all_v(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                      std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                      std::span<const std::uint64_t> recv_counts,
                      std::span<const std::uint64_t> recv_offsets) noexcept override {
    const std::size_t n = static_cast<std::size_t>(size_);
    std::string local_error = check_a2a_arguments(send.size(), send_counts, send_offsets, recv.size(), recv_counts,
                                                  recv_offsets);

    // Tell every receiver what it is about to get, so pairwise disagreements are caught here
    // rather than as a hang or a truncation error deep inside MPI.
    constexpr std::uint64_t kInvalid = UINT64_MAX;
    std::vector<std::uint64_t> announced(n, kInvalid), expected_by_me(n, 0);
    if (local_error.empty()) std::copy(send_counts.begin(), send_counts.end(), announced.begin());
    UCP_MPI_CHECK(MPI_Alltoall(announced.data(), 1, MPI_UINT64_T, expected_by_me.data(), 1, MPI_UINT64_T, comm_));
    if (local_error.empty()) {
      for (std::size_t s = 0; s < n; ++s) {
        if (expected_by_me[s] != kInvalid && expected_by_me[s] != recv_counts[s]) {
          local_error = "all_to_all_v: rank " + std::to_string(s) + " sends " + std::to_string(expected_by_me[s]) +
                        " bytes to rank " + std::to_string(rank_) + ", which expects " + std::to_string(recv_counts[s]);
          break;
        }
      }
    }

    // [0]: someone's arguments are wrong; [1]: someone needs more than one chunk per message.
    std::uint64_t flags[2] = {local_error.empty() ? 0u : 1u, 0};
    if (local_error.empty()) {
      for (std::size_t r = 0; r < n; ++r) {
        if (send_offsets[r] + send_counts[r] > chunk_ || recv_offsets[r] + recv_counts[r] > chunk_) flags[1] = 1;
      }
    }
    UCP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_UINT64_T, MPI_MAX, comm_));
    if (flags[0] != 0) {
      return base::internal_error(local_error.empty()
                                      ? "all_to_all_v: another rank passed inconsistent counts or offsets (see its error)"
                                      : local_error);
    }

    if (flags[1] == 0) {
      std::vector<int> sc(n), sd(n), rc(n), rd(n);
      for (std::size_t r = 0; r < n; ++r) {
        sc[r] = static_cast<int>(send_counts[r]);
        sd[r] = static_cast<int>(send_offsets[r]);
        rc[r] = static_cast<int>(recv_counts[r]);
        rd[r] = static_cast<int>(recv_offsets[r]);
      }
      UCP_MPI_CHECK(MPI_Alltoallv(nonnull(send.data()), sc.data(), sd.data(), MPI_BYTE, nonnull(recv.data()), rc.data(),
                                  rd.data(), MPI_BYTE, comm_));
      return Status();
    }
    return all_to_all_pairwise(send, send_counts, send_offsets, recv, recv_counts, recv_offsets);
  }

  [[noreturn]] void abort(int exit_code) noexcept override {
    MPI_Abort(comm_, exit_code);
    std::_Exit(exit_code);  // MPI_Abort should not return; make sure we never do.
  }

 private:
  // True on every rank iff `local_ok` on every rank; otherwise kResourceExhausted everywhere, with
  // `message` on the ranks where it failed.
  Status everyone(bool local_ok, const std::string& message) {
    int ok = local_ok ? 1 : 0;
    UCP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm_));
    if (ok) return Status();
    return base::resource_exhausted(local_ok ? "another rank ran out of memory in a collective" : message);
  }

  Status bcast_chunked(std::byte* data, std::uint64_t n, int root) {
    for (std::uint64_t off = 0; off < n; off += chunk_) {
      const int len = static_cast<int>(std::min<std::uint64_t>(chunk_, n - off));
      UCP_MPI_CHECK(MPI_Bcast(data + off, len, MPI_BYTE, root, comm_));
    }
    return Status();
  }

  Status all_reduce(std::span<std::uint64_t> values, MPI_Op op) {
    const std::size_t per_call = std::max<std::uint64_t>(1, chunk_ / sizeof(std::uint64_t));
    for (std::size_t off = 0; off < values.size(); off += per_call) {
      const int len = static_cast<int>(std::min(per_call, values.size() - off));
      UCP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data() + off, len, MPI_UINT64_T, op, comm_));
    }
    return Status();
  }

  std::string check_a2a_arguments(std::size_t send_size, std::span<const std::uint64_t> send_counts,
                                  std::span<const std::uint64_t> send_offsets, std::size_t recv_size,
                                  std::span<const std::uint64_t> recv_counts,
                                  std::span<const std::uint64_t> recv_offsets) const {
    const std::size_t n = static_cast<std::size_t>(size_);
    if (send_counts.size() != n || send_offsets.size() != n || recv_counts.size() != n || recv_offsets.size() != n) {
      return "all_to_all_v: counts/offsets must have one entry per rank (" + std::to_string(n) + "), got " +
             std::to_string(send_counts.size()) + "/" + std::to_string(send_offsets.size()) + "/" +
             std::to_string(recv_counts.size()) + "/" + std::to_string(recv_offsets.size()) + " on rank " +
             std::to_string(rank_);
    }
    auto check = [&](const char* what, std::size_t r, std::uint64_t off, std::uint64_t count,
                     std::size_t buffer) -> std::string {
      auto end = base::checked_add(off, count);
      if (end && *end <= buffer) return {};
      return std::string("all_to_all_v: rank ") + std::to_string(rank_) + " " + what + " range for rank " +
             std::to_string(r) + " [" + std::to_string(off) + ", +" + std::to_string(count) +
             ") runs past the buffer (size " + std::to_string(buffer) + ")";
    };
    for (std::size_t r = 0; r < n; ++r) {
      std::string e = check("send", r, send_offsets[r], send_counts[r], send_size);
      if (e.empty()) e = check("recv", r, recv_offsets[r], recv_counts[r], recv_size);
      if (!e.empty()) return e;
    }
    return {};
  }

  // Messages too large for one int-counted call: nonblocking point-to-point, each message split
  // into chunks of at most chunk_ bytes. Receives are posted before sends.
  Status all_to_all_pairwise(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                             std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                             std::span<const std::uint64_t> recv_counts, std::span<const std::uint64_t> recv_offsets) {
    const std::size_t n = static_cast<std::size_t>(size_);
    const std::size_t me = static_cast<std::size_t>(rank_);
    std::vector<MPI_Request> requests;
    std::size_t total = 0;
    for (std::size_t p = 0; p < n; ++p) {
      if (p != me) total += base::ceil_div(send_counts[p], chunk_) + base::ceil_div(recv_counts[p], chunk_);
    }
    requests.reserve(total);  // Small unless a test shrinks chunk_; bad_alloc here terminates.
    // On failure, complete what was already posted so no request outlives its buffer.
    auto fail = [&](int rc, std::string_view call) {
      MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
      return internal::mpi_error(rc, call);
    };
    // Rotate peers so that not every rank talks to rank 0 first.
    for (std::size_t step = 1; step < n; ++step) {
      const std::size_t p = (me + n - step) % n;
      for (std::uint64_t off = 0; off < recv_counts[p]; off += chunk_) {
        const int len = static_cast<int>(std::min<std::uint64_t>(chunk_, recv_counts[p] - off));
        MPI_Request req;
        const int rc = MPI_Irecv(recv.data() + recv_offsets[p] + off, len, MPI_BYTE, static_cast<int>(p),
                                 kAllToAllTag, comm_, &req);
        if (rc != MPI_SUCCESS) return fail(rc, "MPI_Irecv");
        requests.push_back(req);
      }
    }
    for (std::size_t step = 1; step < n; ++step) {
      const std::size_t p = (me + step) % n;
      for (std::uint64_t off = 0; off < send_counts[p]; off += chunk_) {
        const int len = static_cast<int>(std::min<std::uint64_t>(chunk_, send_counts[p] - off));
        MPI_Request req;
        const int rc = MPI_Isend(send.data() + send_offsets[p] + off, len, MPI_BYTE, static_cast<int>(p),
                                 kAllToAllTag, comm_, &req);
        if (rc != MPI_SUCCESS) return fail(rc, "MPI_Isend");
        requests.push_back(req);
      }
    }
    if (send_counts[me] > 0) {
      std::memmove(recv.data() + recv_offsets[me], send.data() + send_offsets[me], send_counts[me]);
    }
    UCP_MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
    return Status();
  }

  MPI_Comm comm_;
  int rank_;
  int size_;
  std::uint64_t chunk_;
  std::string description_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world(const MpiCommOptions& options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return nullptr;
  MPI_Comm comm = MPI_COMM_NULL;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS) return nullptr;
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const std::uint64_t chunk = std::clamp<std::uint64_t>(options.max_chunk_bytes, 1, INT_MAX);
  try {
    return std::make_unique<MpiComm>(comm, rank, size, chunk);
  } catch (const std::bad_alloc&) {
    MPI_Comm_free(&comm);
    return nullptr;
  }
}

bool mpi_available() { return true; }

bool launched_by_mpi_launcher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

}  // namespace ucp::comm
