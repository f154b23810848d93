// Options every conversion command shares (to-fp32, to-universal, reshard), registered once, and
// the steps every conversion command takes alike around its own plan.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/plan/fp32_plan.h"

namespace CLI {
class App;
}

namespace ucp::cli {

struct ConversionOptions {
  std::string max_memory = "1GiB";  ///< Tensor bytes a rank may hold at once.
  bool dry_run = false;
  bool progress = false;  ///< Default: whether stderr is a TTY.
  bool overwrite = false;
  bool timings = false;
  std::string transport = "auto";  ///< auto | mpi | nccl (cli/transport.h)
};

/// Adds --max-memory, --dry-run, --progress/--no-progress, --overwrite, --timings, --transport and
/// --config FILE (cli/config_file.h; applied by run_main after parsing) to `cmd`.
void add_conversion_flags(CLI::App* cmd, ConversionOptions& options);

/// The plan options every conversion shares: --max-memory parsed, the world size of `comm`. Not
/// collective (callers agree on the result, with their own checks).
base::Result<plan::Fp32Options> shared_plan_options(const comm::Communicator& comm, const ConversionOptions& options);

/// Collective. Ends the "plan" phase: every rank agrees that its plan was built (`built`), then
/// on the plan's digest (`digest` is called only when every rank built one).
base::Status agree_on_plan(comm::Communicator& comm, const base::Status& built,
                           const std::function<std::uint64_t()>& digest, exec::PhaseTimer& timer);

/// Collective when --timings was given (every rank has the same options): rank 0 prints the
/// per-phase report.
void print_timings_if_asked(comm::Communicator& comm, const ConversionOptions& options, const exec::PhaseTimer& timer,
                            std::uint64_t bytes_written);

}  // namespace ucp::cli
