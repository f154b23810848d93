// `ucp-reshard to-fp32 CKPT OUT ...`: consolidate a DeepSpeed ZeRO checkpoint into an fp32 model
// (HF-style safetensors or torch .bin shards, or one parallel HDF5 file), in parallel over the
// ranks of the launcher.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/cli/conversion_options.h"
#include "ucp/comm/communicator.h"

namespace CLI {
class App;
}

namespace ucp::cli {

struct ToFp32Options : ConversionOptions {
  std::string checkpoint;
  std::string out;
  std::string tag;
  std::string format = "safetensors";
  std::string max_shard_size = "5GB";
  std::string dtype = "fp32";
  bool exclude_frozen = false;
  bool max_shard_size_given = false;  ///< --max-shard-size was on the command line (refused with hdf5).
  bool dtype_given = false;           ///< --dtype was on the command line (a DCP's whole state keeps stored dtypes otherwise).
  bool with_optimizer = false;        ///< hdf5 only: also store the optimizer states per parameter.
  std::string hf_config;              ///< HF model folder whose config/tokenizer files join the output.
  std::string select;                 ///< Only the tensors under this key prefix, prefix stripped.
  KeyMapOptions keys;                 ///< --key-map, --model-config.
};

/// Registers the subcommand and its options on `app`; returns it.
CLI::App* add_to_fp32_command(CLI::App& app, ToFp32Options& options);

/// Collective over `comm`: every rank runs it with the same options.
base::Status run_to_fp32(comm::Communicator& comm, const ToFp32Options& options);

}  // namespace ucp::cli
