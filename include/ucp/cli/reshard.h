// `ucp-reshard reshard SRC OUT --target-dp M`: a DeepSpeed ZeRO checkpoint re-partitioned for M
// data-parallel ranks, which a plain `engine.load_checkpoint` on M ranks resumes from.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/cli/conversion_options.h"
#include "ucp/comm/communicator.h"

namespace CLI {
class App;
}

namespace ucp::cli {

struct ReshardOptions : ConversionOptions {
  std::string source;
  std::string out;
  std::string tag;
  int target_dp = 0;
};

/// Registers the subcommand and its options on `app`; returns it.
CLI::App* add_reshard_command(CLI::App& app, ReshardOptions& options);

/// Collective over `comm`: every rank runs it with the same options.
base::Status run_reshard(comm::Communicator& comm, const ReshardOptions& options);

}  // namespace ucp::cli
