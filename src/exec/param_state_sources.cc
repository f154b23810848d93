// The registry of sources that serve per-parameter states (what `reshard` and later targets read):
// one line per input format, each a probe and a reader. Adding an input format is adding a line.
#include <array>
#include <functional>

#include "ucp/exec/param_states.h"
#include "zero_source.h"

namespace ucp::exec {
using base::Result;

namespace {

struct ParamStateSource {
  /// The path the reader opens when `path` (with `tag`) is this format; empty when it is not.
  std::string (*probe)(const std::string& path, const std::string& tag);
  /// Collective reader (every rank calls it with the same located path), ending in an agreement.
  Result<OpenedParamStates> (*read)(comm::Communicator& comm, const std::string& located, const std::string& tag,
                                    PhaseTimer& timer);
};

std::string with_stage(std::string what, const plan::ParamStates& s) {
  return what + " (ZeRO stage " + std::to_string(s.zero_stage) + ", dp " + std::to_string(s.dp) + ")";
}

// Readers of small pickles that every rank parses alike: agreed once they are read.
Result<OpenedParamStates> agreed(comm::Communicator& comm, Result<plan::ParamStates> states, const std::string& what,
                                 PhaseTimer& timer) {
  timer.mark("metadata");
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", states.status()).status);
  std::string description = with_stage(what, *states);
  return OpenedParamStates{std::move(*states), std::move(description), {}};
}

Result<OpenedParamStates> read_hdf5(comm::Communicator& comm, const std::string& located, const std::string&,
                                    PhaseTimer& timer) {
  return agreed(comm, param_states_from_hdf5(located), "HDF5 universal checkpoint " + located, timer);
}

Result<OpenedParamStates> read_universal(comm::Communicator& comm, const std::string& located, const std::string&,
                                         PhaseTimer& timer) {
  return agreed(comm, param_states_from_universal(located), "universal checkpoint " + located, timer);
}

std::string probe_zero(const std::string& path, const std::string&) { return path; }

Result<OpenedParamStates> read_zero(comm::Communicator& comm, const std::string& located, const std::string& tag,
                                    PhaseTimer& timer) {
  UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, read_zero_checkpoint(comm, located, tag, timer));  // agreed
  Result<plan::ParamStates> states = param_states_from_zero(ckpt);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", states.status()).status);
  return OpenedParamStates{std::move(*states), describe_checkpoint(ckpt), ckpt.files.save_dir};
}

std::string probe_hdf5(const std::string& path, const std::string&) { return find_hdf5_universal(path); }

// In probing order. A universal folder is looked for before the HDF5 file, as a folder may hold both.
constexpr std::array<ParamStateSource, 3> kSources = {{
    {&find_universal_folder, &read_universal},
    {&probe_hdf5, &read_hdf5},
    {&probe_zero, &read_zero},
}};

}  // namespace

Result<OpenedParamStates> open_param_states(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                            PhaseTimer& timer) {
  for (const ParamStateSource& source : kSources)
    if (const std::string located = source.probe(path, tag); !located.empty())
      return source.read(comm, located, tag, timer);
  return base::internal_error("no reader for '" + path + "'");  // unreachable: the ZeRO probe takes any path
}

}  // namespace ucp::exec
