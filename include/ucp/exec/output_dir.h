// An output directory that becomes visible only when complete: ranks write into a temporary
// sibling folder, and rank 0 renames it into place after every rank has reported success.
#pragma once

#include <functional>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::exec {

class OutputDir {
 public:
  /// Collective. Rank 0 checks OUT (must not exist, be an empty folder, or --overwrite) and creates
  /// a temporary sibling folder; every rank learns its path. Same error on every rank.
  static base::Result<OutputDir> prepare(comm::Communicator& comm, const std::string& out, bool overwrite);

  const std::string& temp_path() const { return temp_; }
  const std::string& final_path() const { return final_; }
  std::string temp_file(const std::string& name) const { return temp_ + "/" + name; }

  /// Collective. Rank 0 moves the temporary folder to OUT (replacing an empty or overwritten OUT),
  /// then runs `after_rename` (files that live beside OUT and name it); one agreement ends both.
  base::Status commit(comm::Communicator& comm, const std::function<base::Status()>& after_rename = {});
  /// Collective. Rank 0 removes the temporary folder (after a failure); OUT is left untouched.
  void abandon(comm::Communicator& comm);

 private:
  std::string final_;
  std::string temp_;
};

}  // namespace ucp::exec
