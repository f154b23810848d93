// Round planning for the NCCL all-to-all-v (see nccl_exchange_plan.h for why the schedule needs no
// exchange between ranks). Lives in ucp_comm, not ucp_nccl, so it is tested where there is no GPU.
#include "ucp/comm/nccl_exchange_plan.h"

#include <algorithm>
#include <string>

#include "ucp/base/checked_math.h"

namespace ucp::comm {

using base::Status;

std::uint64_t nccl_piece_bytes(std::uint64_t staging_budget, int world_size) {
  const std::uint64_t peers = world_size > 1 ? static_cast<std::uint64_t>(world_size - 1) : 1;
  std::uint64_t piece = staging_budget / 2 / peers;
  piece -= piece % kNcclStageAlign;
  return std::max(piece, kNcclMinPiece);
}

std::uint64_t nccl_staging_budget(std::uint64_t max_memory) {
  constexpr std::uint64_t kMin = 1u << 20, kMax = 1u << 30;
  return std::min(std::clamp(max_memory / 4, kMin, kMax), std::max<std::uint64_t>(max_memory, 1));
}

base::Result<NcclExchangePlan> plan_nccl_exchange(int rank, int world_size, std::uint64_t send_size,
                                                  std::span<const std::uint64_t> send_counts,
                                                  std::span<const std::uint64_t> send_offsets,
                                                  std::uint64_t recv_size,
                                                  std::span<const std::uint64_t> recv_counts,
                                                  std::span<const std::uint64_t> recv_offsets,
                                                  std::uint64_t piece_bytes, bool self_through_nccl) {
  const std::string where = "all_to_all_v (NCCL) on rank " + std::to_string(rank) + ": ";
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return base::internal_error(where + "rank out of range (world size " + std::to_string(world_size) + ")");
  }
  if (piece_bytes == 0 || piece_bytes % kNcclStageAlign != 0) {
    return base::internal_error(where + "piece size " + std::to_string(piece_bytes) + " is not a positive multiple of " +
                                std::to_string(kNcclStageAlign));
  }
  const auto n = static_cast<std::size_t>(world_size);
  if (send_counts.size() != n || send_offsets.size() != n || recv_counts.size() != n || recv_offsets.size() != n) {
    return base::internal_error(where + "counts/offsets must have one entry per rank (" + std::to_string(n) + "), got " +
                                std::to_string(send_counts.size()) + "/" + std::to_string(send_offsets.size()) + "/" +
                                std::to_string(recv_counts.size()) + "/" + std::to_string(recv_offsets.size()));
  }
  auto check_range = [&](const char* what, std::size_t p, std::uint64_t off, std::uint64_t count,
                         std::uint64_t size) -> Status {
    const auto end = base::checked_add(off, count);
    if (end && *end <= size) return Status();
    return base::internal_error(where + what + " range for rank " + std::to_string(p) + " [" + std::to_string(off) +
                                ", +" + std::to_string(count) + ") runs past the buffer (size " + std::to_string(size) +
                                ")");
  };
  for (std::size_t p = 0; p < n; ++p) {
    UCP_RETURN_IF_ERROR(check_range("send", p, send_offsets[p], send_counts[p], send_size));
    UCP_RETURN_IF_ERROR(check_range("recv", p, recv_offsets[p], recv_counts[p], recv_size));
  }
  const auto me = static_cast<std::size_t>(rank);
  if (send_counts[me] != recv_counts[me]) {
    return base::internal_error(where + "sends " + std::to_string(send_counts[me]) + " bytes to itself but expects " +
                                std::to_string(recv_counts[me]));
  }

  NcclExchangePlan plan;
  if (!self_through_nccl) {
    plan.self_src = send_offsets[me];
    plan.self_dst = recv_offsets[me];
    plan.self_bytes = send_counts[me];
  }
  const std::size_t first_step = self_through_nccl ? 0 : 1;

  std::uint64_t rounds = 0;
  for (std::size_t p = 0; p < n; ++p) {
    if (p == me && !self_through_nccl) continue;
    rounds = std::max({rounds, base::ceil_div(send_counts[p], piece_bytes), base::ceil_div(recv_counts[p], piece_bytes)});
  }
  plan.rounds.resize(rounds);
  for (std::uint64_t k = 0; k < rounds; ++k) {
    NcclRound& round = plan.rounds[k];
    const std::uint64_t start = k * piece_bytes;  // < max count, so no overflow
    for (std::size_t step = first_step; step < n; ++step) {
      const std::size_t p = (me + step) % n;
      NcclPeerOp op;
      op.peer = static_cast<int>(p);
      if (send_counts[p] > start) {
        op.send_bytes = std::min(piece_bytes, send_counts[p] - start);
        op.src_offset = send_offsets[p] + start;
        op.send_stage = round.send_stage_bytes;
        round.send_stage_bytes += base::align_up(op.send_bytes, kNcclStageAlign);
      }
      if (recv_counts[p] > start) {
        op.recv_bytes = std::min(piece_bytes, recv_counts[p] - start);
        op.dst_offset = recv_offsets[p] + start;
        op.recv_stage = round.recv_stage_bytes;
        round.recv_stage_bytes += base::align_up(op.recv_bytes, kNcclStageAlign);
      }
      if (op.send_bytes > 0 || op.recv_bytes > 0) round.ops.push_back(op);
    }
    plan.max_send_stage = std::max(plan.max_send_stage, round.send_stage_bytes);
    plan.max_recv_stage = std::max(plan.max_recv_stage, round.recv_stage_bytes);
  }
  return plan;
}

}  // namespace ucp::comm
