#include "ucp/exec/output_dir.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

namespace ucp::exec {
namespace fs = std::filesystem;
using base::Result;
using base::Status;

namespace {

Status check_and_create(const std::string& out, bool overwrite, std::string& temp) {
  std::error_code ec;
  const fs::path final_path = fs::absolute(out).lexically_normal();
  if (fs::exists(final_path, ec)) {
    if (!fs::is_directory(final_path, ec))
      return base::failed_precondition("output '" + out + "' exists and is not a directory");
    if (!fs::is_empty(final_path, ec) && !overwrite)
      return base::failed_precondition("output directory '" + out + "' exists and is not empty (use --overwrite to replace it)");
  }
  const fs::path parent = final_path.parent_path();
  // Like os.makedirs in zero_to_fp32 / save_pretrained: missing parents are created.
  fs::create_directories(parent, ec);
  if (!fs::is_directory(parent, ec))
    return base::failed_precondition("cannot create the output's parent directory '" + parent.string() + "'" +
                                     (ec ? ": " + ec.message() : ""));
  const auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".ucp-tmp-%d-%llx", static_cast<int>(getpid()), stamp & 0xffffffffull);
  const fs::path tmp = parent / ("." + final_path.filename().string() + suffix);
  if (!fs::create_directory(tmp, ec))
    return base::failed_precondition("cannot create temporary output folder '" + tmp.string() + "': " + ec.message());
  temp = tmp.string();
  return {};
}

}  // namespace

Result<OutputDir> OutputDir::prepare(comm::Communicator& comm, const std::string& out, bool overwrite) {
  OutputDir dir;
  dir.final_ = out;
  Status local;
  if (comm.rank() == 0) local = check_and_create(out, overwrite, dir.temp_);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", local).status);
  std::vector<std::byte> name(dir.temp_.size());
  std::memcpy(name.data(), dir.temp_.data(), name.size());
  UCP_RETURN_IF_ERROR(comm.broadcast(name, 0));
  dir.temp_.assign(reinterpret_cast<const char*>(name.data()), name.size());
  return dir;
}

Status OutputDir::commit(comm::Communicator& comm, const std::function<Status()>& after_rename) {
  Status local;
  if (comm.rank() == 0) {
    std::error_code ec;
    const fs::path final_path = fs::absolute(final_).lexically_normal();
    fs::path aside;
    if (fs::exists(final_path, ec)) {
      aside = fs::path(temp_ + ".old");
      fs::rename(final_path, aside, ec);
      if (ec) local = base::failed_precondition("cannot move the old '" + final_ + "' aside: " + ec.message());
    }
    if (local.ok()) {
      fs::rename(temp_, final_path, ec);
      if (ec) {
        local = base::failed_precondition("cannot rename '" + temp_ + "' to '" + final_ + "': " + ec.message());
        if (!aside.empty()) fs::rename(aside, final_path, ec);  // put the old output back
      } else if (!aside.empty()) {
        fs::remove_all(aside, ec);
      }
    }
    if (local.ok() && after_rename) local = after_rename();
  }
  return comm::agree(comm, "commit", local).status;
}

void OutputDir::abandon(comm::Communicator& comm) {
  (void)comm.barrier();
  if (comm.rank() == 0 && !temp_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

}  // namespace ucp::exec
