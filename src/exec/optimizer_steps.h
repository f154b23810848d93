// The optimizer's per-group `step` counter (torch Adam keeps one per parameter, identical within a
// group): what a universal checkpoint stores next to each parameter's moments. Read by rank 0 from
// rank 0's optimizer file and broadcast, so every rank holds the same values.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::exec {

/// No step recorded / a Python int / a float (torch >= 1.12 keeps a float tensor).
using OptimizerStep = std::variant<std::monostate, std::int64_t, double>;

/// Collective. steps[g] for every flat group g of ckpt.models[0].param_shapes (ZeRO-3: sub-group),
/// from the inner torch optimizer's state[g]['step'] (base_optimizer_state at stage <= 2 and
/// BF16_Optimizer, optimizer_state_dict at ZeRO-3); monostate where there is none. Errors (an
/// unreadable file) are agreed on.
base::Result<std::vector<OptimizerStep>> read_optimizer_steps(comm::Communicator& comm, const format::ZeroCheckpoint& ckpt);

}  // namespace ucp::exec
