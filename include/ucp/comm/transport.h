// Choosing between the MPI and NCCL transports (--transport auto|mpi|nccl), and where each rank
// sits on its host (which GPU it gets). The decision is pure and made from facts every rank
// gathered, so every rank reaches the same one; it is built without CUDA and tested on CPU.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::comm {

enum class Transport : std::uint8_t { kAuto, kMpi, kNccl };

/// "auto", "mpi", "nccl" (as on the command line); nullopt for anything else.
std::optional<Transport> transport_from_name(std::string_view name);
std::string_view transport_name(Transport t);

/// Where a rank runs: its index among the ranks of its host, and how many there are.
struct NodePlacement {
  int local_rank = 0;
  int local_size = 1;
};

/// What each rank reports for the transport decision.
struct RankGpuInfo {
  std::uint32_t devices = 0;     ///< CUDA devices this rank sees (0 when NCCL is not built).
  std::uint32_t local_rank = 0;  ///< From NodePlacement: the device it would use.
  std::uint32_t local_size = 1;
};

struct TransportChoice {
  Transport transport = Transport::kMpi;  ///< kMpi or kNccl, never kAuto.
  std::string reason;                     ///< "auto: every rank has a GPU", "requested", ...
};

/// Pure. `ranks[r]` is rank r's report. A rank "has a GPU" when local_rank < devices: NCCL needs
/// one device per rank (two ranks of one communicator on one device is an NCCL error), and rank r
/// uses device local_rank. auto picks NCCL iff it is built and every rank has a GPU; mpi always
/// gives MPI; nccl gives NCCL or kUnavailable naming the ranks without a device (the same error on
/// every rank, as every rank passes the same reports).
base::Result<TransportChoice> choose_transport(Transport requested, bool nccl_built,
                                               std::span<const RankGpuInfo> ranks);

/// Pure. `host_keys[r]` identifies rank r's host; ranks with equal keys share a host and are
/// numbered in rank order.
NodePlacement placement_from_host_keys(int rank, std::span<const std::string> host_keys);

/// Collective. This rank's placement, from an all_gather of host keys (host name + Linux boot id,
/// the identity NCCL itself uses for "same host"). Works over any Communicator, MPI or not.
base::Result<NodePlacement> node_placement(Communicator& comm);

/// Collective. all_gathers every rank's RankGpuInfo (given `devices` seen locally and this rank's
/// placement) and returns choose_transport's verdict, identical on every rank.
base::Result<TransportChoice> agree_on_transport(Communicator& comm, Transport requested, bool nccl_built,
                                                 int devices, const NodePlacement& placement);

}  // namespace ucp::comm
