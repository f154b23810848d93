// NcclComm: Communicator over NCCL for the bulk exchange, over the bootstrap communicator (MPI)
// for everything else. Every CUDA and NCCL call is checked; a failure or a timeout inside an
// exchange aborts the NCCL communicator (ncclCommAbort) and returns kUnavailable, and the rank
// stays usable for the agree() that follows over the bootstrap communicator.
//
// Why the control collectives (barrier, broadcast, all_gather, all_reduce_*) go over MPI: they
// carry bytes to kilobytes (agreement records, digests, sizes) from host memory; through NCCL each
// would be H2D + kernel + D2H plus a stream sync, slower than one MPI call, and MPI is required
// anyway to bootstrap NCCL. Only all_to_all_v carries tensor data.
#include "ucp/comm/nccl_comm.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "ucp/comm/nccl_exchange_plan.h"
#include "ucp/comm/nccl_transport.h"
#include "ucp/comm/transport.h"

namespace ucp::comm {

using base::Status;
using Clock = std::chrono::steady_clock;

namespace {

// "cudaMemcpyAsync(d, h, n, kind, s)" -> "cudaMemcpyAsync".
std::string call_name(std::string_view call_text) {
  std::string_view name = call_text.substr(0, call_text.find('('));
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  return std::string(name);
}

Status cuda_error(cudaError_t e, std::string_view call_text) {
  const std::string text = call_name(call_text) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return e == cudaErrorMemoryAllocation ? base::resource_exhausted(text) : base::unavailable(text);
}

Status nccl_error(ncclResult_t r, std::string_view call_text, ncclComm_t comm) {
  std::string text = call_name(call_text) + " failed: " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
  return base::unavailable(std::move(text));
}

#define UCP_CUDA_CHECK(call)                                        \
  do {                                                              \
    const cudaError_t ucp_cuda_rc_ = (call);                        \
    if (ucp_cuda_rc_ != cudaSuccess) return cuda_error(ucp_cuda_rc_, #call); \
  } while (false)

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

Status timed_out(std::string_view what, double timeout_s) {
  return base::unavailable(std::string(what) + " did not complete within " + std::to_string(static_cast<long>(timeout_s)) +
                           " s (UCP_NCCL_TIMEOUT_S)");
}

void pause_briefly() { std::this_thread::sleep_for(std::chrono::microseconds(50)); }

// A non-blocking communicator reports ncclInProgress until an operation has been issued; nothing
// else may be called on it before then (except ncclCommAbort).
Status wait_until_ready(ncclComm_t comm, std::string_view what, Clock::time_point deadline, double timeout_s) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm, &state);
    if (rc != ncclSuccess) return nccl_error(rc, "ncclCommGetAsyncError", comm);
    if (state == ncclSuccess) return Status();
    if (state != ncclInProgress) return nccl_error(state, what, comm);
    if (Clock::now() > deadline) return timed_out(what, timeout_s);
    pause_briefly();
  }
}

// Host-side RAII for one CUDA staging buffer, device memory or pinned host memory; release is
// best effort (destructors cannot report).
struct StagingBuffer {
  bool pinned = false;
  std::byte* ptr = nullptr;
  std::uint64_t size = 0;
  void release() {
    if (ptr != nullptr) pinned ? cudaFreeHost(ptr) : cudaFree(ptr);
    ptr = nullptr;
    size = 0;
  }
  // Grows to at least `want` bytes; never shrinks (rounds of one run have similar sizes).
  cudaError_t grow(std::uint64_t want) {
    if (want <= size) return cudaSuccess;
    release();
    void* p = nullptr;
    const cudaError_t e = pinned ? cudaHostAlloc(&p, want, cudaHostAllocDefault) : cudaMalloc(&p, want);
    if (e != cudaSuccess) return e;
    ptr = static_cast<std::byte*>(p);
    size = want;
    return cudaSuccess;
  }
};

class NcclComm final : public Communicator {
 public:
  NcclComm(std::unique_ptr<Communicator> boot, ncclComm_t nccl, cudaStream_t stream, int device,
           std::uint64_t piece, double timeout_s, bool self_through_nccl)
      : boot_(std::move(boot)),
        nccl_(nccl),
        stream_(stream),
        device_(device),
        rank_(boot_->rank()),
        size_(boot_->size()),
        piece_(piece),
        timeout_s_(timeout_s),
        self_through_nccl_(self_through_nccl) {
    description_ = "NCCL " + nccl_version_string() + " on cuda:" + std::to_string(device_) +
                   ", control collectives over " + boot_->description();
  }

  ~NcclComm() override {
    cudaSetDevice(device_);
    if (nccl_ != nullptr) {
      // Finalize flushes outstanding work and waits for the peers; if that fails or hangs, abort.
      const ncclResult_t rc = ncclCommFinalize(nccl_);
      const bool clean = (rc == ncclSuccess || rc == ncclInProgress) && wait_until_ready(nccl_, "ncclCommFinalize", deadline_after(timeout_s_), timeout_s_).ok();
      if (clean) {
        ncclCommDestroy(nccl_);
      } else {
        ncclCommAbort(nccl_);
      }
      nccl_ = nullptr;
    }
    for (StagingBuffer* b : {&d_send_, &d_recv_, &h_send_, &h_recv_}) b->release();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override { return description_; }

  Status barrier() noexcept override { return boot_->barrier(); }
  Status broadcast(std::vector<std::byte>& data, int root) noexcept override { return boot_->broadcast(data, root); }
  base::Result<std::vector<std::vector<std::byte>>> all_gather(std::span<const std::byte> mine) noexcept override {
    return boot_->all_gather(mine);
  }
  Status all_reduce_max(std::span<std::uint64_t> values) noexcept override { return boot_->all_reduce_max(values); }
  Status all_reduce_sum(std::span<std::uint64_t> values) noexcept override { return boot_->all_reduce_sum(values); }

  Status all_to_all_v(std::span<const std::byte> send, std::span<const std::uint64_t> send_counts,
                      std::span<const std::uint64_t> send_offsets, std::span<std::byte> recv,
                      std::span<const std::uint64_t> recv_counts,
                      std::span<const std::uint64_t> recv_offsets) noexcept override {
    const auto n = static_cast<std::size_t>(size_);
    const auto me = static_cast<std::size_t>(rank_);
    // 1. Local checks and the schedule (no communication).
    std::string local_error;
    NcclExchangePlan plan;
    try {
      auto planned = plan_nccl_exchange(rank_, size_, send.size(), send_counts, send_offsets, recv.size(), recv_counts,
                                        recv_offsets, piece_, self_through_nccl_);
      if (planned.ok()) plan = std::move(*planned);
      else local_error = planned.status().message();
    } catch (const std::bad_alloc&) {
      local_error = "all_to_all_v (NCCL) on rank " + std::to_string(rank_) + ": out of memory planning the rounds";
    }

    // 2. Pairwise agreement of counts, over the bootstrap communicator: each rank tells each peer
    //    how many bytes it will send it. Without this, a plan bug would leave NCCL waiting forever.
    std::vector<std::uint64_t> mine(n, 0), theirs(n, 0), eight(n, sizeof(std::uint64_t)), at(n, 0);
    if (send_counts.size() == n) std::copy(send_counts.begin(), send_counts.end(), mine.begin());
    for (std::size_t r = 0; r < n; ++r) at[r] = r * sizeof(std::uint64_t);
    UCP_RETURN_IF_ERROR(boot_->all_to_all_v(std::as_bytes(std::span(mine)), eight, at,
                                            std::as_writable_bytes(std::span(theirs)), eight, at));
    if (local_error.empty()) {
      for (std::size_t s = 0; s < n && local_error.empty(); ++s) {
        if (s != me && theirs[s] != recv_counts[s]) {
          local_error = "all_to_all_v (NCCL): rank " + std::to_string(s) + " sends " + std::to_string(theirs[s]) +
                        " bytes to rank " + std::to_string(rank_) + ", which expects " + std::to_string(recv_counts[s]);
        }
      }
    }

    // 3. Staging for the largest round, then one agreement on all three ways to fail early.
    std::string alloc_error;
    if (local_error.empty() && nccl_ != nullptr) {
      const Status s = reserve(plan.max_send_stage, plan.max_recv_stage);
      if (!s.ok()) alloc_error = s.message();
    }
    std::uint64_t flags[3] = {local_error.empty() ? 0u : 1u, alloc_error.empty() ? 0u : 1u, nccl_ == nullptr ? 1u : 0u};
    UCP_RETURN_IF_ERROR(boot_->all_reduce_max(flags));
    if (flags[0] != 0) {
      return base::internal_error(local_error.empty()
                                      ? "all_to_all_v (NCCL): another rank passed inconsistent counts or offsets (see its error)"
                                      : local_error);
    }
    if (flags[2] != 0) {
      return base::unavailable(nccl_ == nullptr ? broken_why_
                                                : "all_to_all_v (NCCL): the NCCL communicator of another rank was "
                                                  "aborted after an earlier failure");
    }
    if (flags[1] != 0) {
      return base::resource_exhausted(alloc_error.empty()
                                          ? "all_to_all_v (NCCL): another rank could not allocate its staging buffers"
                                          : alloc_error);
    }

    // 4. The message to myself never leaves the host (unless a test asked for self_through_nccl).
    if (plan.self_bytes > 0) std::memmove(recv.data() + plan.self_dst, send.data() + plan.self_src, plan.self_bytes);

    // 5. The rounds. Any failure aborts the NCCL communicator: peers blocked in the same round
    //    then fail or time out too, instead of hanging.
    for (std::size_t k = 0; k < plan.rounds.size(); ++k) {
      const Status s = run_round(plan.rounds[k], send, recv);
      if (!s.ok()) {
        const std::string why = "all_to_all_v (NCCL) on rank " + std::to_string(rank_) + ", round " +
                                std::to_string(k + 1) + "/" + std::to_string(plan.rounds.size()) + ": " + s.message() +
                                "; NCCL communicator aborted";
        abort_nccl(why);
        return base::unavailable(why);
      }
    }
    return Status();
  }

  [[noreturn]] void abort(int exit_code) noexcept override {
    if (nccl_ != nullptr) ncclCommAbort(nccl_);
    nccl_ = nullptr;
    boot_->abort(exit_code);
    std::_Exit(exit_code);  // abort() does not return; make sure we never do either.
  }

 private:
  void abort_nccl(const std::string& why) {
    if (nccl_ != nullptr) ncclCommAbort(nccl_);
    nccl_ = nullptr;
    broken_why_ = why;
  }

  // Grows the staging buffers (never shrinks: rounds of one run have similar sizes).
  Status reserve(std::uint64_t send_bytes, std::uint64_t recv_bytes) {
    UCP_CUDA_CHECK(cudaSetDevice(device_));
    auto grow = [&](StagingBuffer& b, std::uint64_t want, const char* what) -> Status {
      const cudaError_t e = b.grow(want);
      if (e == cudaSuccess) return Status();
      const std::string where = b.pinned ? "pinned " + std::string(what) + " staging"
                                         : std::string(what) + " staging on cuda:" + std::to_string(device_);
      return base::resource_exhausted("rank " + std::to_string(rank_) + ": " + (b.pinned ? "cudaHostAlloc" : "cudaMalloc") +
                                      " of " + std::to_string(want) + " bytes of " + where +
                                      " failed: " + cudaGetErrorString(e));
    };
    UCP_RETURN_IF_ERROR(grow(d_send_, send_bytes, "send"));
    UCP_RETURN_IF_ERROR(grow(d_recv_, recv_bytes, "receive"));
    UCP_RETURN_IF_ERROR(grow(h_send_, send_bytes, "send"));
    UCP_RETURN_IF_ERROR(grow(h_recv_, recv_bytes, "receive"));
    return Status();
  }

  // Waits for everything queued on the stream, watching NCCL's asynchronous error and the clock.
  Status wait_for_stream(Clock::time_point deadline) {
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return Status();
      if (e != cudaErrorNotReady) return cuda_error(e, "cudaStreamQuery");
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
      if (rc != ncclSuccess) return nccl_error(rc, "ncclCommGetAsyncError", nccl_);
      if (state != ncclSuccess && state != ncclInProgress) return nccl_error(state, "NCCL send/recv", nccl_);
      if (Clock::now() > deadline) return timed_out("the NCCL exchange", timeout_s_);
      pause_briefly();
    }
  }

  Status run_round(const NcclRound& round, std::span<const std::byte> send, std::span<std::byte> recv) {
    const Clock::time_point deadline = deadline_after(timeout_s_);
    UCP_CUDA_CHECK(cudaSetDevice(device_));
    for (const NcclPeerOp& op : round.ops) {
      if (op.send_bytes > 0) std::memcpy(h_send_.ptr + op.send_stage, send.data() + op.src_offset, op.send_bytes);
    }
    if (round.send_stage_bytes > 0) {
      UCP_CUDA_CHECK(cudaMemcpyAsync(d_send_.ptr, h_send_.ptr, round.send_stage_bytes, cudaMemcpyHostToDevice, stream_));
    }
    {
      ncclResult_t rc = ncclGroupStart();
      if (rc != ncclSuccess) return nccl_error(rc, "ncclGroupStart", nccl_);
      Status queued;
      for (const NcclPeerOp& op : round.ops) {
        if (op.send_bytes > 0) {
          rc = ncclSend(d_send_.ptr + op.send_stage, op.send_bytes, ncclUint8, op.peer, nccl_, stream_);
          if (rc != ncclSuccess && rc != ncclInProgress) {
            queued = nccl_error(rc, "ncclSend", nccl_);
            break;
          }
        }
        if (op.recv_bytes > 0) {
          rc = ncclRecv(d_recv_.ptr + op.recv_stage, op.recv_bytes, ncclUint8, op.peer, nccl_, stream_);
          if (rc != ncclSuccess && rc != ncclInProgress) {
            queued = nccl_error(rc, "ncclRecv", nccl_);
            break;
          }
        }
      }
      // Close the group even after a failed call: an open group would swallow later NCCL calls.
      rc = ncclGroupEnd();
      UCP_RETURN_IF_ERROR(queued);
      if (rc == ncclInProgress) {
        UCP_RETURN_IF_ERROR(wait_until_ready(nccl_, "ncclGroupEnd", deadline, timeout_s_));
      } else if (rc != ncclSuccess) {
        return nccl_error(rc, "ncclGroupEnd", nccl_);
      }
    }
    if (round.recv_stage_bytes > 0) {
      UCP_CUDA_CHECK(cudaMemcpyAsync(h_recv_.ptr, d_recv_.ptr, round.recv_stage_bytes, cudaMemcpyDeviceToHost, stream_));
    }
    UCP_RETURN_IF_ERROR(wait_for_stream(deadline));
    for (const NcclPeerOp& op : round.ops) {
      if (op.recv_bytes > 0) std::memcpy(recv.data() + op.dst_offset, h_recv_.ptr + op.recv_stage, op.recv_bytes);
    }
    return Status();
  }

  std::unique_ptr<Communicator> boot_;
  ncclComm_t nccl_;  // nullptr once aborted
  cudaStream_t stream_;
  const int device_;
  const int rank_;
  const int size_;
  const std::uint64_t piece_;
  const double timeout_s_;
  const bool self_through_nccl_;
  std::string description_;
  std::string broken_why_;
  StagingBuffer d_send_, d_recv_;
  StagingBuffer h_send_{.pinned = true}, h_recv_{.pinned = true};
};

// Local part of the set-up: device and stream. Returns the stream through `stream`.
Status open_device(int device, cudaStream_t* stream) {
  int count = 0;
  UCP_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return base::unavailable("CUDA device " + std::to_string(device) + " does not exist (this rank sees " +
                             std::to_string(count) + " device(s))");
  }
  UCP_CUDA_CHECK(cudaSetDevice(device));
  UCP_CUDA_CHECK(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking));
  return Status();
}

}  // namespace

double nccl_timeout_from_env() {
  if (const char* v = std::getenv("UCP_NCCL_TIMEOUT_S")) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (end != v && *end == '\0' && s > 0) return s;
  }
  return 600;
}

base::Result<std::unique_ptr<Communicator>> make_nccl_comm(std::unique_ptr<Communicator>& bootstrap,
                                                            const NcclCommOptions& options) {
  if (!bootstrap) return base::internal_error("make_nccl_comm: no bootstrap communicator");
  Communicator& boot = *bootstrap;
  const std::string me = "rank " + std::to_string(boot.rank()) + ": ";

  // Device: the node-local rank unless one was given (every rank takes the same branch).
  int device = options.device;
  Status local;
  if (device < 0) {
    auto placement = node_placement(boot);
    if (placement.ok()) device = placement->local_rank;
    else local = placement.status();
  }
  cudaStream_t stream = nullptr;
  if (local.ok()) local = open_device(device, &stream);
  if (!local.ok()) local = Status(local.code(), me + local.message());
  auto fail_after_stream = [&](Status s) {
    if (stream != nullptr) cudaStreamDestroy(stream);
    return s;
  };
  if (Status s = agree(boot, "nccl-device", local).status; !s.ok()) return fail_after_stream(s);

  // The piece size must be the same everywhere: take the smallest staging budget.
  std::uint64_t inverse_budget = std::numeric_limits<std::uint64_t>::max() - options.staging_bytes;
  if (Status s = boot.all_reduce_max(std::span(&inverse_budget, 1)); !s.ok()) return fail_after_stream(s);
  const std::uint64_t budget = std::numeric_limits<std::uint64_t>::max() - inverse_budget;
  const std::uint64_t piece = nccl_piece_bytes(budget, boot.size() + (options.self_through_nccl ? 1 : 0));

  // Unique id from rank 0: one status byte, then the id.
  std::vector<std::byte> id_bytes(1 + sizeof(ncclUniqueId), std::byte{0});
  ncclUniqueId id{};
  local = Status();
  if (boot.rank() == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) {
      local = nccl_error(rc, "ncclGetUniqueId", nullptr);
      id_bytes[0] = std::byte{1};
    } else {
      std::memcpy(id_bytes.data() + 1, &id, sizeof id);
    }
  }
  if (Status s = boot.broadcast(id_bytes, 0); !s.ok()) return fail_after_stream(s);
  if (boot.rank() != 0 && id_bytes.size() == 1 + sizeof id) std::memcpy(&id, id_bytes.data() + 1, sizeof id);
  if (Status s = agree(boot, "nccl-unique-id", local).status; !s.ok()) return fail_after_stream(s);

  // Non-blocking init, polled: a rank that never arrives costs a timeout, not a hang.
  ncclComm_t nccl = nullptr;
  {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const double timeout_s = options.timeout_s > 0 ? options.timeout_s : 600;
    const ncclResult_t rc = ncclCommInitRankConfig(&nccl, boot.size(), id, boot.rank(), &config);
    if (rc == ncclInProgress || (rc == ncclSuccess && nccl != nullptr)) {
      local = wait_until_ready(nccl, "ncclCommInitRankConfig", deadline_after(timeout_s), timeout_s);
    } else {
      local = nccl_error(rc, "ncclCommInitRankConfig", nccl);
    }
    if (!local.ok()) local = Status(local.code(), me + local.message() + " (device cuda:" + std::to_string(device) + ")");
  }
  const Agreement init = agree(boot, "nccl-init", local);
  if (!init.status.ok()) {
    if (nccl != nullptr) ncclCommAbort(nccl);
    return fail_after_stream(init.status);
  }
  try {
    std::unique_ptr<Communicator> out =
        std::make_unique<NcclComm>(std::move(bootstrap), nccl, stream, device, piece,
                                   options.timeout_s > 0 ? options.timeout_s : 600, options.self_through_nccl);
    return out;
  } catch (const std::bad_alloc&) {
    // Not collective any more; the next exchange will find this rank missing and time out.
    ncclCommAbort(nccl);
    return fail_after_stream(base::resource_exhausted(me + "out of memory creating the NCCL communicator"));
  }
}

}  // namespace ucp::comm
