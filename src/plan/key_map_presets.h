// Private to plan: the key-map presets of configs/key-maps/*.json, compiled in by CMake
// (generated key_map_presets.cc) so that --key-map NAME works wherever the binary is installed.
#pragma once

#include <span>
#include <string_view>

namespace ucp::plan::detail {

struct KeyMapPreset {
  std::string_view name;  ///< The file name without .json ("hf-to-meta").
  std::string_view json;  ///< Its content.
};

std::span<const KeyMapPreset> key_map_presets();

}  // namespace ucp::plan::detail
