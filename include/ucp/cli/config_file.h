// `--config FILE` for the conversion commands: a flat JSON object whose keys are the command's long
// flag names (`max_shard_size` or `max-shard-size`), applied only to the options the command line
// left unset, so flags always win. Unknown keys are usage errors with a "did you mean" hint.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/status.h"

namespace CLI {
class App;
}

namespace ucp::cli {

/// One key of a config file, its value spelled as on the command line ("2GB", "true", "3").
struct ConfigEntry {
  std::string key;  ///< As written in the file.
  std::string value;
  bool is_bool = false;  ///< The JSON value was true/false.
};

/// Parses the text of a config file: a JSON object of string, number or boolean values, each key
/// once. `name` (the file name) starts every error message.
base::Result<std::vector<ConfigEntry>> parse_config_text(std::string_view text, std::string_view name);

/// Canonical spelling of a key: long flag name without dashes, '-' written as '_' ("max_shard_size").
std::string canonical_config_key(std::string_view key);

/// The candidate nearest to `key` by edit distance, or "" when none is near enough to suggest.
std::string closest_config_key(std::string_view key, const std::vector<std::string>& candidates);

/// Keys `cmd` accepts in a config file (canonical spelling, sorted): its long option names, except
/// help and config itself.
std::vector<std::string> config_keys(const CLI::App& cmd);

/// Registers `--config FILE` on `cmd` (add_conversion_flags calls it).
void add_config_flag(CLI::App* cmd);

/// After `cmd` was parsed: when --config was given, reads the file and fills every option the command
/// line did not set, running the option's own checks. No-op when `cmd` has no --config option or it
/// was not given. Errors are invalid_argument, one line naming the file and the key.
base::Status apply_config_file(CLI::App& cmd);

}  // namespace ucp::cli
