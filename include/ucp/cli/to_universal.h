// `ucp-reshard to-universal CKPT OUT ...`: DeepSpeed's universal checkpoint (the layout of
// ds_to_universal.py, v0.14.5) written in parallel over the ranks of the launcher.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/cli/conversion_options.h"
#include "ucp/comm/communicator.h"

namespace CLI {
class App;
}

namespace ucp::cli {

struct ToUniversalOptions : ConversionOptions {
  std::string checkpoint;
  std::string out;
  std::string tag;
};

/// Registers the subcommand and its options on `app`; returns it.
CLI::App* add_to_universal_command(CLI::App& app, ToUniversalOptions& options);

/// Collective over `comm`: every rank runs it with the same options.
base::Status run_to_universal(comm::Communicator& comm, const ToUniversalOptions& options);

}  // namespace ucp::cli
