#include "save_dir_extras.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>

namespace ucp::exec {
using base::Result;
namespace fs = std::filesystem;

Result<std::vector<plan::SmallFile>> save_dir_small_files(const std::string& source_dir, int target_dp,
                                                           std::vector<std::string>& warnings) {
  std::vector<plan::SmallFile> out;
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
    out.push_back({name, {}, e.path().string(), plan::SmallFile::Place::kInOutput});
  }
  if (ec) return base::unavailable("listing '" + source_dir + "' failed: " + ec.message());
  if (!rng.empty()) {
    const int n = static_cast<int>(rng.size());
    for (int r = 0; r < n; ++r)
      if (!rng.count(r))
        return base::not_found("'" + source_dir + "': rng_state_" + std::to_string(r) + ".pth is missing (found " +
                               std::to_string(n) + " per-rank RNG files)");
    for (int r = 0; r < target_dp; ++r)
      out.push_back({target_dp == 1 ? "rng_state.pth" : "rng_state_" + std::to_string(r) + ".pth", {}, rng[r % n],
                     plan::SmallFile::Place::kInOutput});
    if (target_dp != n)
      warnings.push_back("per-rank RNG states: new rank r gets the RNG state of source rank r mod " + std::to_string(n) +
                         (target_dp > n ? " (RNG streams repeat across ranks)" : " (extra source RNG states dropped)"));
  }
  std::sort(out.begin(), out.end(), [](const plan::SmallFile& a, const plan::SmallFile& b) { return a.name < b.name; });
  return out;
}

}  // namespace ucp::exec
