// Options every conversion command shares (to-fp32, to-universal, reshard), registered once, and
// the steps every conversion command takes alike around its own plan.
#pragma once

#include <cstdint>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/convert.h"
#include "ucp/exec/pipeline.h"
#include "ucp/plan/file_plan.h"

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
  std::string shared_output = "auto";  ///< auto | yes | no: may every rank write into the output files?
  bool restart = false;  ///< Throw away an interrupted run's temporary folder instead of resuming it.
  bool no_sync = false;  ///< Skip fsync of the journal, the output files and folders (scratch space).
};

/// --key-map and --model-config (to-fp32, to-dcp).
struct KeyMapOptions {
  std::string key_map;       ///< A preset name (configs/key-maps/) or a JSON file; "" = keys kept.
  std::string model_config;  ///< HF config.json or Meta/Lingua params.json giving the heads.
};

/// Adds --key-map and --model-config to `cmd`.
void add_key_map_flags(CLI::App* cmd, KeyMapOptions& options);

/// The key mapping the options name: the preset or file parsed; the model config explicit, else
/// config.json or params.json in `checkpoint` when there. Local (no collective): callers agree.
base::Result<exec::KeyMapping> key_mapping(const KeyMapOptions& options, const std::string& checkpoint);

/// Adds --max-memory, --dry-run, --progress/--no-progress, --overwrite, --timings, --transport,
/// --shared-output, --restart, --no-sync and
/// --config FILE (cli/config_file.h; applied by run_main after parsing) to `cmd`.
void add_conversion_flags(CLI::App* cmd, ConversionOptions& options);

/// The plan options every conversion shares: --max-memory parsed, the world size of `comm`, direct
/// writes (--shared-output; auto: when every rank runs on one host). Collective (every rank calls
/// it; callers agree on the result, with their own checks).
base::Result<plan::PlanOptions> shared_plan_options(comm::Communicator& comm, const ConversionOptions& options);

/// What the pipeline needs of the shared flags, for `command` writing `out`.
exec::RunOptions run_options(const ConversionOptions& options, std::string command, std::string out);

}  // namespace ucp::cli
