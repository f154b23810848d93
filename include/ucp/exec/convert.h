// What a command asks for: read a source, write a target. A command parses its options, names its
// target here with them, and calls convert(); exec reads the source through the reader the target
// takes, plans the target (plan/) and runs the one pipeline (exec/pipeline.h).
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/exec/pipeline.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/key_map.h"

namespace ucp::exec {

/// --key-map and --model-config: the map applied to the source's tensors after --select
/// (plan/key_map.h), and where the model's heads come from when it permutes q/k rows.
struct KeyMapping {
  std::optional<plan::KeyMap> map;  ///< Unset: keys as the source names them.
  /// An HF config.json or Meta/Lingua params.json; "": the source's save dir's config.json, if any.
  std::string model_config;
};

/// to-fp32: the consolidated model as an HF model folder (safetensors or torch shards, index,
/// config and tokenizer files; options.format, max_shard_bytes, float_dtype) or as the one file
/// Lightning's convert_zero_checkpoint_to_fp32_state_dict writes.
struct ModelFolderTarget {
  bool lightning = false;
  bool exclude_frozen = false;
  std::string hf_config;  ///< HF outputs: the folder whose config/tokenizer files join the output.
  std::string select;     ///< Only the tensors under this key prefix, renamed without it ("" = all).
  KeyMapping key_map;     ///< Applied after select.
  /// --dtype was given: a DCP's whole state (torch format, no select) casts floating tensors to it;
  /// otherwise it keeps the stored dtypes, as dcp_to_torch_save does.
  bool dtype_given = false;
};

/// to-fp32 --format hdf5: one parallel-HDF5 file, optionally with the optimizer states and the
/// files of a universal checkpoint (plan/hdf5_plan.h).
struct Hdf5Target {
  bool exclude_frozen = false;
  bool with_optimizer = false;
  std::string producer;  ///< Recorded as the file's "producer" attribute ("ucp-reshard 0.1.0 to-fp32").
  std::string select;    ///< As ModelFolderTarget::select.
  KeyMapping key_map;    ///< As ModelFolderTarget::key_map.
};

/// to-universal: DeepSpeed's universal checkpoint, and latest_universal beside it.
struct UniversalTarget {};

/// reshard: DeepSpeed's own ZeRO files for `target_dp` data-parallel ranks, with `latest` and the
/// framework files of the source's save dir.
struct ZeroFilesTarget {
  int target_dp = 1;
};

/// to-dcp: a PyTorch DCP folder chunked for `target_world_size` training ranks (plan/dcp_plan.h).
struct DcpTarget {
  int target_world_size = 1;
  std::optional<base::DType> float_dtype;  ///< Unset: floating tensors keep their dtype.
  std::string select;                      ///< As ModelFolderTarget::select.
  std::string layout = "plain";            ///< How the loader nests its state: plain, lingua, torchtitan.
  bool with_optimizer = false;             ///< Also torch Adam's state from a DeepSpeed optimizer.
  KeyMapping key_map;                      ///< As ModelFolderTarget::key_map.
  /// --like: an existing DCP folder whose tensor keys, shapes and dtypes the output takes.
  std::string like;
  /// --lingua-params: an HF config.json from which a Lingua params.json is written beside the
  /// .metadata, naming `lingua_tokenizer` ("NAME" or "NAME:PATH").
  std::string lingua_params;
  std::string lingua_tokenizer;
};

using Target = std::variant<ModelFolderTarget, Hdf5Target, UniversalTarget, ZeroFilesTarget, DcpTarget>;

/// Collective (every rank, same arguments). Reads `source` (`tag`: instead of the one `latest`
/// names), plans `target` with `options` and runs the pipeline with `run`.
base::Status convert(comm::Communicator& comm, const std::string& source, const std::string& tag, const Target& target,
                     const plan::PlanOptions& options, const RunOptions& run, PhaseTimer& timer);

}  // namespace ucp::exec
