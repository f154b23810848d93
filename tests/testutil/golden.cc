#include "testutil/golden.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace ucp::testutil {
namespace fs = std::filesystem;

std::string golden_dir() {
  if (const char* env = std::getenv("UCP_GOLDEN_DIR"); env && *env) return env;
  return UCP_GOLDEN_DIR;
}

std::string deepspeed_fixture(const std::string& name) { return golden_dir() + "/deepspeed/" + name; }

namespace {
std::vector<std::string> config_folders(const std::string& set) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(golden_dir() + "/" + set)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("resume_", 0) != 0) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}
}  // namespace

std::vector<std::string> deepspeed_fixture_names() { return config_folders("deepspeed"); }

std::vector<std::string> fixture_sets() { return {"deepspeed", "deepspeed-0.19"}; }

std::vector<std::string> all_fixture_ids() {
  std::vector<std::string> ids;
  for (const std::string& set : fixture_sets())
    for (const std::string& name : config_folders(set)) ids.push_back(set + "/" + name);
  return ids;
}

std::string fixture_path(const std::string& id) { return golden_dir() + "/" + id; }

std::vector<std::string> all_golden_pt_files() {
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(golden_dir() + "/deepspeed"))
    if (e.is_regular_file() && e.path().extension() == ".pt") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::byte> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

}  // namespace ucp::testutil
