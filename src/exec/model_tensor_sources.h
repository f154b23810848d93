// Private to exec: the registry of sources that serve a checkpoint's model tensors as a
// format::SourceLayout (what the consolidated targets read): probed in order, first match wins.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/format/dcp.h"
#include "ucp/format/tensor_layout.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::exec {

struct KeyMapping;

struct OpenedModelTensors {
  format::SourceLayout layout;
  std::vector<std::string> paths;  ///< The files TensorLocation::file indexes.
  std::string description;         ///< How --dry-run names the source.
  std::string save_dir;            ///< Where HF model files (config.json, tokenizer) may sit; may be empty.
  /// DeepSpeed ZeRO files only: the checkpoint, for the targets that carry its other contents.
  std::optional<format::ZeroCheckpoint> zero;
  /// DCP folders only: the parsed .metadata, for the targets that carry its non-tensor items and
  /// nesting (to-fp32 --format torch writes dcp_to_torch_save's whole state).
  std::shared_ptr<const format::dcp::Metadata> dcp;
};

/// `layout`, or the tensors of it under `prefix` (format::select_prefix) when one is given.
base::Result<format::SourceLayout> selected(const format::SourceLayout& layout, const std::string& prefix);

/// The view of the source every consolidated target reads: its tensors under `select` (as
/// selected()), then renamed, dropped, permuted and tied by `key_map` (plan::apply_key_map; heads
/// from key_map.model_config, else the save dir's config.json). `template_keys`: to-dcp --like's.
/// Pure but for reading the model config file; errors are the same on every rank.
base::Result<format::SourceLayout> source_view(const OpenedModelTensors& source, const std::string& select,
                                               const KeyMapping& key_map,
                                               const std::vector<std::string>* template_keys = nullptr);

/// `layout` (tensors named as the source names its model tensors: optimizer moments) through
/// `key_map` alone, as source_view maps the model; `sources` as plan::apply_key_map's.
base::Result<format::SourceLayout> key_mapped(const OpenedModelTensors& source, const KeyMapping& key_map,
                                              const format::SourceLayout& layout, std::vector<std::size_t>* sources);

/// Collective (every rank, same arguments); ends in an agreement. `exclude_frozen` applies to
/// sources that know which tensors are frozen (DeepSpeed); others refuse it.
base::Result<OpenedModelTensors> open_model_tensors(comm::Communicator& comm, const std::string& path,
                                                    const std::string& tag, bool exclude_frozen, PhaseTimer& timer);

}  // namespace ucp::exec
