// Private to exec: the readers of model_tensor_sources.cc for PyTorch DCP folders, model files (HF
// safetensors / torch files and folders, torch's HF-DCP safetensors layout) and universal
// checkpoint folders, each a probe and a collective reader ending in an agreement.
#pragma once

#include <string>

#include "model_tensor_sources.h"

namespace ucp::exec {

/// A PyTorch DCP folder (probe: format::dcp::is_dcp_folder): its tensor items as chunks placed in
/// their tensors, and its parsed .metadata (non-tensor items, nesting) for the targets that carry it.
base::Result<OpenedModelTensors> read_dcp(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                          bool exclude_frozen, PhaseTimer& timer);

/// A universal checkpoint folder (find_universal_folder), or a save dir whose latest_universal names one.
bool is_universal_source(const std::string& path);
/// Model tensors of a universal checkpoint: buffers and frozen parameters from its model-state
/// copy, trainable parameters from zero/<param>/fp32.pt, tied names as aliases.
base::Result<OpenedModelTensors> read_universal_model(comm::Communicator& comm, const std::string& path,
                                                      const std::string& tag, bool exclude_frozen, PhaseTimer& timer);

/// The model.h5 of to-fp32 --format hdf5 (the file, or a folder holding it): its /model datasets,
/// read where they lie (through format::StateDict's HDF5 loader).
bool is_hdf5_model_source(const std::string& path);
base::Result<OpenedModelTensors> read_hdf5_model(comm::Communicator& comm, const std::string& path,
                                                 const std::string& tag, bool exclude_frozen, PhaseTimer& timer);

/// torch's HuggingFaceStorageWriter layout (format/hf_dcp.h): a folder or one such file.
bool is_hf_dcp_source(const std::string& path);
base::Result<OpenedModelTensors> read_hf_dcp(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                             bool exclude_frozen, PhaseTimer& timer);

/// What format::StateDict opens (.safetensors, a torch .bin/.pt/.pth/.ckpt file, an index, an HF
/// folder), except DeepSpeed's own files and folders (latest, *model_states.pt, *optim_states.pt),
/// which stay with the ZeRO reader.
bool is_model_file_source(const std::string& path);
base::Result<OpenedModelTensors> read_model_files(comm::Communicator& comm, const std::string& path,
                                                  const std::string& tag, bool exclude_frozen, PhaseTimer& timer);

}  // namespace ucp::exec
