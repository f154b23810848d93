// An output directory that becomes visible only when complete: ranks write into a temporary
// sibling folder (.OUT.ucp-tmp-<pid>-<hash>), and rank 0 renames it into place after every rank
// has reported success.
//
// Ownership: while a run writes OUT it holds the lock file .OUT.ucp-lock beside OUT (host, pid,
// process start time, temporary folder; its mtime refreshed every 30 s). A second run into the
// same OUT is refused with one line naming the host and process. A lock whose owner is gone (its
// process no longer exists on this host, or, for another host, no refresh for 3 minutes) is stale.
//
// Leftovers: temporary folders of runs whose owner is gone are found beside OUT. One whose journal
// (exec/journal.h) names this very run is resumed; any other is removed, with a line giving its
// size and why.
//
// Durable commit (unless --no-sync): the caller syncs the files; commit syncs every folder of the
// temporary folder before the rename, and the folder holding OUT after it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::exec {

struct PrepareOptions {
  std::string command;   ///< For the lines rank 0 prints ("reshard").
  bool overwrite = false;
  bool restart = false;  ///< Never resume: remove an earlier run's folder.
  bool sync = true;      ///< Durable journal and commit.
  /// The run's identity (exec/journal.h run_identity); empty: this kind of run cannot resume.
  std::string identity;
  /// Why it cannot resume, when identity is empty (said when an earlier folder is removed).
  std::string why_not_resumable;
};

class OutputDir {
 public:
  OutputDir();
  OutputDir(OutputDir&&) noexcept;
  OutputDir& operator=(OutputDir&&) noexcept;
  ~OutputDir();

  /// Collective. Rank 0 checks OUT (must not exist, be an empty folder, or --overwrite), takes the
  /// lock, cleans up or picks an earlier run's temporary folder, or creates a new one; every rank
  /// learns its path and whether it is resumed. Same error on every rank.
  static base::Result<OutputDir> prepare(comm::Communicator& comm, const std::string& out, const PrepareOptions& options);

  const std::string& temp_path() const { return temp_; }
  const std::string& final_path() const { return final_; }
  std::string temp_file(const std::string& name) const { return temp_ + "/" + name; }
  /// The temporary folder is an earlier run's with the same identity (its journal says how far).
  bool resumed() const { return resumed_; }
  bool sync() const { return sync_; }

  /// Collective. Rank 0 removes the journal, syncs the folders (unless --no-sync), moves the
  /// temporary folder to OUT (replacing an empty or overwritten OUT), syncs the folder holding it,
  /// then runs `after_rename` (files that live beside OUT and name it); one agreement ends both.
  /// Releases the lock.
  base::Status commit(comm::Communicator& comm, const std::function<base::Status()>& after_rename = {});
  /// Collective. Rank 0 removes the temporary folder (after a failure) and the lock; OUT is left untouched.
  void abandon(comm::Communicator& comm);
  /// Collective. After an interruption: the temporary folder and its journal stay for a resume;
  /// the lock is released.
  void keep_for_resume(comm::Communicator& comm);

 private:
  void release_lock();

  std::string final_;
  std::string temp_;
  std::string lock_;  // rank 0: the lock file it holds
  bool resumed_ = false;
  bool sync_ = true;
  struct Heartbeat;
  std::unique_ptr<Heartbeat> heartbeat_;
};

/// fsync of a folder (its entries); errors name it.
base::Status sync_folder(const std::string& dir);
/// fsync of a file by path.
base::Status sync_file(const std::string& path);

}  // namespace ucp::exec
