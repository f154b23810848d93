// The transport decision (see transport.h). Built in ucp_comm without CUDA: the NCCL side only
// supplies a device count, so the rules are tested on machines without a GPU.
#include "ucp/comm/transport.h"

#include <unistd.h>

#include <climits>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace ucp::comm {

namespace {

std::string host_key() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0) std::strcpy(name, "unknown-host");
  std::string key(name);
  // Containers on one machine may share a host name but not a boot id, or the reverse; NCCL
  // treats "same host" as both equal, and so do we.
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (boot && std::getline(boot, id)) key += "/" + id;
  return key;
}

}  // namespace

std::optional<Transport> transport_from_name(std::string_view name) {
  if (name == "auto") return Transport::kAuto;
  if (name == "mpi") return Transport::kMpi;
  if (name == "nccl") return Transport::kNccl;
  return std::nullopt;
}

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::kAuto: return "auto";
    case Transport::kMpi: return "mpi";
    case Transport::kNccl: return "nccl";
  }
  return "?";
}

base::Result<TransportChoice> choose_transport(Transport requested, bool nccl_built,
                                               std::span<const RankGpuInfo> ranks) {
  if (requested == Transport::kMpi) return TransportChoice{Transport::kMpi, "requested"};
  if (!nccl_built) {
    if (requested == Transport::kAuto) return TransportChoice{Transport::kMpi, "auto: NCCL not built in"};
    return base::unavailable(
        "--transport nccl: this ucp-reshard was built without NCCL (CUDA or NCCL was not found at build time); "
        "use --transport mpi or auto");
  }
  if (ranks.empty()) return base::internal_error("choose_transport: no rank reports");
  std::vector<int> no_device, no_own_device;
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    if (ranks[r].devices == 0) {
      no_device.push_back(static_cast<int>(r));
    } else if (ranks[r].local_rank >= ranks[r].devices) {
      no_own_device.push_back(static_cast<int>(r));
    }
  }
  if (no_device.empty() && no_own_device.empty()) {
    return TransportChoice{Transport::kNccl, requested == Transport::kAuto ? "auto: every rank has a GPU" : "requested"};
  }
  std::string why;
  if (!no_device.empty()) why = "no CUDA device on " + format_rank_list(no_device);
  if (!no_own_device.empty()) {
    if (!why.empty()) why += "; ";
    why += "no CUDA device of their own on " + format_rank_list(no_own_device) +
           " (more ranks than devices on their host; NCCL needs one device per rank)";
  }
  if (requested == Transport::kAuto) return TransportChoice{Transport::kMpi, "auto: " + why};
  return base::unavailable("--transport nccl: " + why + "; use --transport mpi or auto");
}

NodePlacement placement_from_host_keys(int rank, std::span<const std::string> host_keys) {
  NodePlacement p{0, 0};
  const auto me = static_cast<std::size_t>(rank);
  for (std::size_t r = 0; r < host_keys.size(); ++r) {
    if (host_keys[r] != host_keys[me]) continue;
    if (r < me) ++p.local_rank;
    ++p.local_size;
  }
  return p;
}

base::Result<NodePlacement> node_placement(Communicator& comm) {
  const std::string key = host_key();
  UCP_ASSIGN_OR_RETURN(auto gathered,
                       comm.all_gather(std::span<const std::byte>(reinterpret_cast<const std::byte*>(key.data()), key.size())));
  std::vector<std::string> keys;
  keys.reserve(gathered.size());
  for (const auto& g : gathered) keys.emplace_back(reinterpret_cast<const char*>(g.data()), g.size());
  if (comm.rank() < 0 || static_cast<std::size_t>(comm.rank()) >= keys.size()) {
    return base::internal_error("node_placement: rank " + std::to_string(comm.rank()) + " outside the gathered " +
                                std::to_string(keys.size()) + " host names");
  }
  return placement_from_host_keys(comm.rank(), keys);
}

base::Result<TransportChoice> agree_on_transport(Communicator& comm, Transport requested, bool nccl_built, int devices,
                                                 const NodePlacement& placement) {
  const std::uint32_t mine[3] = {static_cast<std::uint32_t>(devices < 0 ? 0 : devices),
                                 static_cast<std::uint32_t>(placement.local_rank),
                                 static_cast<std::uint32_t>(placement.local_size)};
  UCP_ASSIGN_OR_RETURN(auto gathered,
                       comm.all_gather(std::span<const std::byte>(reinterpret_cast<const std::byte*>(mine), sizeof mine)));
  std::vector<RankGpuInfo> infos(gathered.size());
  for (std::size_t r = 0; r < gathered.size(); ++r) {
    if (gathered[r].size() != sizeof mine) {
      return base::internal_error("agree_on_transport: rank " + std::to_string(r) + " sent " +
                                  std::to_string(gathered[r].size()) + " bytes, expected " + std::to_string(sizeof mine));
    }
    std::uint32_t v[3];
    std::memcpy(v, gathered[r].data(), sizeof v);
    infos[r] = RankGpuInfo{v[0], v[1], v[2]};
  }
  return choose_transport(requested, nccl_built, infos);
}

}  // namespace ucp::comm
