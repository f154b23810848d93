// `ucp-reshard to-dcp SRC OUT --target-world-size M`: a PyTorch DCP folder pre-chunked for M
// training ranks (FSDP2's Shard(0)), from any source of the model-tensor registry (DeepSpeed ZeRO,
// DCP), written in parallel over the ranks of the launcher.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/cli/conversion_options.h"
#include "ucp/comm/communicator.h"

namespace CLI {
class App;
}

namespace ucp::cli {

struct ToDcpOptions : ConversionOptions {
  std::string checkpoint;
  std::string out;
  std::string tag;
  int target_world_size = 1;
  std::string dtype = "keep";
  std::string select;
  std::string layout = "plain";
  bool with_optimizer = false;
  KeyMapOptions keys;             ///< --key-map, --model-config.
  std::string like;               ///< --like DIR: keys, shapes and dtypes of an existing DCP.
  std::string lingua_params;      ///< --lingua-params CONFIG: write Lingua's params.json from it.
  std::string lingua_tokenizer;   ///< --lingua-tokenizer NAME[:PATH], named in that params.json.
};

/// Registers the subcommand and its options on `app`; returns it.
CLI::App* add_to_dcp_command(CLI::App& app, ToDcpOptions& options);

/// Collective over `comm`: every rank runs it with the same options.
base::Status run_to_dcp(comm::Communicator& comm, const ToDcpOptions& options);

}  // namespace ucp::cli
