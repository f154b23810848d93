#include "ucp/exec/save_dir_extras.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>

#include "ucp/exec/file_io.h"

namespace ucp::exec {
using base::Result;
using base::Status;
namespace fs = std::filesystem;

Result<std::vector<SaveDirCopy>> plan_save_dir_extras(const std::string& source_dir, int target_dp,
                                                      std::vector<std::string>& warnings) {
  std::vector<SaveDirCopy> out;
  std::error_code ec;
  if (!fs::is_directory(source_dir, ec)) return out;
  static const std::regex rng_name(R"(rng_state(?:_(\d+))?\.pth)");
  std::map<int, std::string> rng;  // source rank -> path
  for (const auto& e : fs::directory_iterator(source_dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const std::string name = e.path().filename().string();
    if (name == "latest" || name == "latest_universal") continue;
    std::smatch m;
    if (std::regex_match(name, m, rng_name)) {
      rng[m[1].matched ? std::stoi(m[1].str()) : 0] = e.path().string();
      continue;
    }
    out.push_back({e.path().string(), name});
  }
  if (ec) return base::unavailable("listing '" + source_dir + "' failed: " + ec.message());
  if (!rng.empty()) {
    const int n = static_cast<int>(rng.size());
    for (int r = 0; r < n; ++r)
      if (!rng.count(r))
        return base::not_found("'" + source_dir + "': rng_state_" + std::to_string(r) + ".pth is missing (found " +
                               std::to_string(n) + " per-rank RNG files)");
    for (int r = 0; r < target_dp; ++r)
      out.push_back({rng[r % n], target_dp == 1 ? "rng_state.pth" : "rng_state_" + std::to_string(r) + ".pth"});
    if (target_dp != n)
      warnings.push_back("per-rank RNG states: new rank r gets the RNG state of source rank r mod " + std::to_string(n) +
                         (target_dp > n ? " (RNG streams repeat across ranks)" : " (extra source RNG states dropped)"));
  }
  std::sort(out.begin(), out.end(), [](const SaveDirCopy& a, const SaveDirCopy& b) { return a.to < b.to; });
  return out;
}

Status copy_save_dir_extras(const std::vector<SaveDirCopy>& copies, const std::string& out_dir) {
  for (const auto& c : copies) UCP_RETURN_IF_ERROR(copy_file(c.from, out_dir + "/" + c.to));
  return {};
}

}  // namespace ucp::exec
