#include "ucp/cli/conversion_options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "ucp/base/size.h"

#include "ucp/cli/config_file.h"

namespace ucp::cli {

void add_conversion_flags(CLI::App* cmd, ConversionOptions& o) {
  cmd->add_option("--max-memory", o.max_memory, "Tensor bytes a rank may hold at once")->capture_default_str();
  cmd->add_flag("--dry-run", o.dry_run, "Print the plan (bytes read/sent/written per rank, files, memory) and stop");
  cmd->add_flag("--progress,!--no-progress", o.progress,
                "Show bytes done, rate and ETA on rank 0 (default: when stderr is a TTY)");
  cmd->add_flag("--overwrite", o.overwrite, "Replace a non-empty output directory");
  cmd->add_flag("--timings", o.timings, "Print per-phase timings and peak memory per rank (JSON) at the end");
  add_config_flag(cmd);
  cmd->add_option("--transport", o.transport,
                  "auto (NCCL when built in and every rank has a GPU of its own, else MPI), mpi or nccl")
      ->check(CLI::IsMember({"auto", "mpi", "nccl"}))
      ->capture_default_str();
  o.progress = ::isatty(STDERR_FILENO) != 0;
}

base::Result<plan::Fp32Options> shared_plan_options(const comm::Communicator& comm, const ConversionOptions& o) {
  plan::Fp32Options p;
  UCP_ASSIGN_OR_RETURN(p.max_memory, base::parse_size(o.max_memory).annotate("--max-memory"));
  p.world_size = comm.size();
  return p;
}

base::Status agree_on_plan(comm::Communicator& comm, const base::Status& built,
                           const std::function<std::uint64_t()>& digest, exec::PhaseTimer& timer) {
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", built).status);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", exec::agree_on_digest(comm, digest())).status);
  timer.mark("plan");
  return {};
}

void print_timings_if_asked(comm::Communicator& comm, const ConversionOptions& o, const exec::PhaseTimer& timer,
                            std::uint64_t bytes_written) {
  if (!o.timings) return;
  const std::string report = exec::report_timings(comm, timer, bytes_written);
  if (comm.rank() == 0) std::cerr << "timings: " << report << std::endl;
}

}  // namespace ucp::cli
