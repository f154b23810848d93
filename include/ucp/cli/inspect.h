// `ucp-reshard inspect PATH [--json] [--tag T]`: what is in a checkpoint file or folder.
#pragma once

#include <ostream>
#include <string>

#include "ucp/base/status.h"

namespace ucp::cli {

struct InspectOptions {
  std::string path;      ///< .pt/.bin/.pth (torch zip), .safetensors, .h5 (to-fp32), or a DeepSpeed checkpoint dir.
  std::string tag;       ///< Overrides the checkpoint's `latest`.
  bool json = false;     ///< Machine-readable output.
  int max_items = 16;    ///< Container items shown before "... N more" (text output).
};

/// Single-process: reads PATH and writes the report to `out`. Called on rank 0 only.
base::Status run_inspect(const InspectOptions& options, std::ostream& out);

}  // namespace ucp::cli
