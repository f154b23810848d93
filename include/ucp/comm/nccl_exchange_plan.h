// How the NCCL transport splits one all-to-all-v into rounds of grouped ncclSend/ncclRecv that fit
// its staging buffers. Pure host logic with no CUDA dependency, so it is built and unit-tested on
// every machine; the NCCL communicator (nccl_comm.h) only executes what this returns.
//
// Consistency without exchanging schedules: the message from r to p is cut into pieces of
// `piece_bytes` (a value every rank shares), and round k carries piece k of every message. Rank r
// and rank p both derive "piece k of r->p" from the same byte count, so the send on r and the
// matching receive on p always sit in the same round, and round k on any rank only waits for
// round k on its peers: no cycle, no deadlock.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ucp/base/status.h"

namespace ucp::comm {

/// Staging offsets are aligned to this (NCCL and the copy engines are faster on aligned buffers);
/// piece sizes are multiples of it, so alignment never makes a round exceed its budget.
inline constexpr std::uint64_t kNcclStageAlign = 256;
/// Smallest piece: below this, per-round latency dominates. The budget is exceeded rather than
/// going smaller (only when budget / (2 * (world - 1)) < 4 KiB, i.e. thousands of ranks on a
/// tiny budget).
inline constexpr std::uint64_t kNcclMinPiece = 4096;

/// One peer's traffic in one round. Offsets into the caller's buffers (`src_offset`,
/// `dst_offset`) and into the round's staging buffers (`send_stage`, `recv_stage`).
struct NcclPeerOp {
  int peer = 0;
  std::uint64_t src_offset = 0;
  std::uint64_t send_bytes = 0;  ///< 0: nothing sent to `peer` this round
  std::uint64_t send_stage = 0;
  std::uint64_t dst_offset = 0;
  std::uint64_t recv_bytes = 0;  ///< 0: nothing received from `peer` this round
  std::uint64_t recv_stage = 0;
};

struct NcclRound {
  std::vector<NcclPeerOp> ops;  ///< Peers with traffic this round, in rotated order (me+1, me+2, ...).
  std::uint64_t send_stage_bytes = 0;  ///< Extent of the send staging used (aligned pieces packed).
  std::uint64_t recv_stage_bytes = 0;
};

struct NcclExchangePlan {
  std::vector<NcclRound> rounds;  ///< Empty when this rank exchanges nothing with other ranks.
  /// The rank's message to itself never touches the device: a host copy.
  std::uint64_t self_src = 0, self_dst = 0, self_bytes = 0;
  std::uint64_t max_send_stage = 0;  ///< Staging this rank needs, per direction (max over rounds).
  std::uint64_t max_recv_stage = 0;
};

/// Piece size for a staging budget (device bytes for send + receive staging together) and a world
/// size: each round sends at most (world-1) pieces and receives as many, so budget/2/(world-1),
/// rounded down to kNcclStageAlign, at least kNcclMinPiece. Every rank must use the same value.
std::uint64_t nccl_piece_bytes(std::uint64_t staging_budget, int world_size);

/// Device staging budget derived from --max-memory: a quarter of it (the host already holds the
/// executor's send and receive buffers within max_memory), between 1 MiB and 1 GiB, and never more
/// than max_memory itself.
std::uint64_t nccl_staging_budget(std::uint64_t max_memory);

/// Rank `rank`'s rounds for an all-to-all-v with the semantics of Communicator::all_to_all_v.
/// Checks what one rank can check alone (kInternal): span lengths equal world_size, every range
/// inside its buffer (send_size / recv_size bytes), the self message's send and receive counts
/// equal. Pairwise agreement with the peers' counts needs the peers and is the caller's job.
/// `self_through_nccl` schedules the message to itself like any peer's (self_bytes stays 0); it
/// exists so a one-GPU machine can exercise the device path (rounds then carry up to world_size
/// pieces per direction: size piece_bytes for world_size + 1 ranks).
base::Result<NcclExchangePlan> plan_nccl_exchange(int rank, int world_size, std::uint64_t send_size,
                                                  std::span<const std::uint64_t> send_counts,
                                                  std::span<const std::uint64_t> send_offsets,
                                                  std::uint64_t recv_size,
                                                  std::span<const std::uint64_t> recv_counts,
                                                  std::span<const std::uint64_t> recv_offsets,
                                                  std::uint64_t piece_bytes, bool self_through_nccl = false);

}  // namespace ucp::comm
