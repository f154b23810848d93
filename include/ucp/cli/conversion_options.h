// Options every conversion command shares (to-fp32, to-universal, later reshard), registered once.
#pragma once

#include <string>

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

}  // namespace ucp::cli
