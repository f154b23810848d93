// open_transport (cli/transport.h). The only place in the CLI that knows whether NCCL is built.
#include "ucp/cli/transport.h"

#include "ucp/base/size.h"
#include "ucp/comm/nccl_exchange_plan.h"
#include "ucp/comm/transport.h"
#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL
#include "ucp/comm/nccl_comm.h"
#include "ucp/comm/nccl_transport.h"
#endif

namespace ucp::cli {

base::Result<std::string> open_transport(std::unique_ptr<comm::Communicator>& comm, const ConversionOptions& options) {
  const auto requested = comm::transport_from_name(options.transport);
  if (!requested) {
    return base::invalid_argument("--transport: '" + options.transport + "' is not one of auto, mpi, nccl");
  }
#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL
  constexpr bool kNcclBuilt = true;
  // Only worth asking the driver and the other ranks when NCCL could be chosen.
  comm::NodePlacement placement;
  int devices = 0;
  if (*requested != comm::Transport::kMpi) {
    UCP_ASSIGN_OR_RETURN(placement, comm::node_placement(*comm));
    devices = comm::cuda_device_count();
  }
#else
  constexpr bool kNcclBuilt = false;
  const comm::NodePlacement placement;
  const int devices = 0;
#endif
  UCP_ASSIGN_OR_RETURN(comm::TransportChoice choice,
                       comm::agree_on_transport(*comm, *requested, kNcclBuilt, devices, placement));
  if (choice.transport == comm::Transport::kMpi) return "transport: MPI (" + choice.reason + ")";
#if defined(UCP_HAVE_NCCL) && UCP_HAVE_NCCL
  comm::NcclCommOptions nccl_options;
  nccl_options.device = placement.local_rank;
  nccl_options.timeout_s = comm::nccl_timeout_from_env();
  // A bad --max-memory is reported by the command itself; the default budget stands in until then.
  if (auto max_memory = base::parse_size(options.max_memory); max_memory.ok()) {
    nccl_options.staging_bytes = comm::nccl_staging_budget(*max_memory);
  }
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<comm::Communicator> nccl, comm::make_nccl_comm(comm, nccl_options));
  comm = std::move(nccl);
  return "transport: NCCL " + comm::nccl_version_string() + " (" + choice.reason + ")";
#else
  return base::internal_error("open_transport: NCCL chosen in a build without NCCL");
#endif
}

}  // namespace ucp::cli
