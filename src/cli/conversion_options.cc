#include "ucp/cli/conversion_options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>

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

}  // namespace ucp::cli
