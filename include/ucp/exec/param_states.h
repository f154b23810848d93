// The source side of `reshard`: a checkpoint described per parameter (plan::ParamStates), with
// the pickle trees of the files whose non-partitioned content the new files carry over. Every
// rank builds the same ParamStates (the pickles are small; tensor data stays mapped, unread).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/phases.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/zero_files_plan.h"

namespace ucp::exec {

/// A source of per-parameter states, as the registry below opened it.
struct OpenedParamStates {
  plan::ParamStates states;
  std::string description;  ///< How --dry-run and messages name it.
  std::string save_dir;     ///< The DeepSpeed save dir whose framework files travel along; empty for others.
};

/// Collective (every rank calls with the same arguments; the probes read the same shared files).
/// Picks the reader of `path` from the registry of sources that can serve per-parameter states,
/// first match wins: a universal checkpoint folder, the HDF5 file of to-fp32 --with-optimizer,
/// DeepSpeed ZeRO files (the fallback, whose reader names what it expected). Ends in an agreement.
base::Result<OpenedParamStates> open_param_states(comm::Communicator& comm, const std::string& path,
                                                  const std::string& tag, PhaseTimer& timer);

/// From a ZeRO / BF16_Optimizer checkpoint whose metadata was read (read_zero_checkpoint).
/// Refuses what cannot be re-partitioned as DeepSpeed ZeRO files (round-robin gradients, an optimizer without
/// Adam moments is fine, a ZeRO-3 sub-group layout that does not follow from sub_group_size).
base::Result<plan::ParamStates> param_states_from_zero(const format::ZeroCheckpoint& ckpt);

/// The universal folder `path` names: `path` itself when it holds zero/optimizer_state.pt, or
/// `path`/<tag> (tag from `tag` or `path`/latest_universal). Empty when `path` is not universal.
std::string find_universal_folder(const std::string& path, const std::string& tag);

/// Where the files of a universal checkpoint are stored: a folder (ds_to_universal's layout, or
/// ours), or the HDF5 file of `to-fp32 --with-optimizer` (plan/hdf5_plan.h). Paths are relative
/// to the universal folder ("mp_rank_00_model_states.pt", "zero/optimizer_state.pt").
class UniversalFiles {
 public:
  /// A parameter state (zero/<param>/<state>.pt in a folder): a torch file holding a tensor or
  /// {'param': tensor}, or raw fp32 elements at `raw` (file ignored) of the file `raw_path`.
  struct State {
    std::optional<format::TorchFile> file;
    std::string raw_path;
    format::TensorLocation raw;
  };

  virtual ~UniversalFiles() = default;
  /// The folder or file, for messages.
  virtual const std::string& name() const = 0;
  /// The checkpoint's tag (the folder's name; what to-fp32 recorded in the HDF5 file).
  virtual std::string tag() const = 0;
  /// The files directly in the universal folder (not in zero/).
  virtual base::Result<std::vector<std::string>> top_level_files() const = 0;
  virtual bool exists(const std::string& relative) const = 0;
  /// A torch file. Its storages belong to a MappedFile that is either the file itself or a
  /// MappedFile::view() of the container named by its parent().
  virtual base::Result<format::TorchFile> open(const std::string& relative) const = 0;
  /// State `state` ("fp32", "exp_avg", "exp_avg_sq") of parameter `param`; nullopt when absent.
  virtual base::Result<std::optional<State>> state(const std::string& param, const std::string& state) const = 0;
};

/// From the files of a universal checkpoint: per-parameter states zero/<name>/{fp32,exp_avg,
/// exp_avg_sq}, zero/<name>/step.pt, zero/optimizer_state.pt and the model-state copies. Not
/// collective: every rank parses the same small pickles. Parameter states must hold exactly the
/// parameter's elements (DeepSpeed's converter leaves padding in some ZeRO-3 files: refused by name).
base::Result<plan::ParamStates> param_states_from_universal(const UniversalFiles& files);
/// The same from a universal checkpoint folder.
base::Result<plan::ParamStates> param_states_from_universal(const std::string& folder);

/// The HDF5 file `path` names when it is one (by its signature), or a folder holding model.h5;
/// empty otherwise.
std::string find_hdf5_universal(const std::string& path);
/// From the HDF5 file of `to-fp32 --format hdf5 --with-optimizer` (its /optimizer and /universal
/// groups; parameter states are read straight from the datasets). Unimplemented when this binary
/// has no HDF5; NotFound naming the file when it was written without --with-optimizer.
base::Result<plan::ParamStates> param_states_from_hdf5(const std::string& path);

}  // namespace ucp::exec
