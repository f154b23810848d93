// Where the real DeepSpeed fixtures live (tests/golden/deepspeed, copied from shared/fixtures),
// and helpers to enumerate and read them.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ucp::testutil {

/// Absolute path of tests/golden (compile-time UCP_GOLDEN_DIR, overridable by env UCP_GOLDEN_DIR).
std::string golden_dir();
/// Config folder names under golden/deepspeed ("mlp_z2_bf16_ws2", ...), sorted; resume_* excluded.
std::vector<std::string> deepspeed_fixture_names();
/// golden/deepspeed/<name>.
std::string deepspeed_fixture(const std::string& name);
/// Every fixture set written by a DeepSpeed release: "deepspeed" (0.14.5), "deepspeed-0.19".
std::vector<std::string> fixture_sets();
/// "<set>/<name>" for every config folder of every set (resume_* excluded), sorted by set then name.
std::vector<std::string> all_fixture_ids();
/// golden/<set>/<name> for an id of all_fixture_ids().
std::string fixture_path(const std::string& id);
/// Every *.pt file under golden/deepspeed, sorted.
std::vector<std::string> all_golden_pt_files();
/// The whole content of a file (empty when it cannot be read).
std::vector<std::byte> read_file_bytes(const std::string& path);

}  // namespace ucp::testutil
