// The model of a to-fp32 HDF5 file (/model: one dataset per tensor, tied names as hard links) as
// a state dict, for diff and inspect. Lives in ucp_hdf5; StateDict::open uses it once installed.
#pragma once

#include <string>

#include "ucp/base/status.h"
#include "ucp/format/state_dict.h"

namespace ucp::format {

/// Every dataset of /model, in creation order, viewing the mapped file (bf16 by the dtype
/// attribute). NotFound naming the file when it has no /model group.
base::Result<StateDictContents> read_hdf5_state_dict(const std::string& path);

/// Installs read_hdf5_state_dict as StateDict's HDF5 loader.
void install_hdf5_state_dict_loader();

}  // namespace ucp::format
