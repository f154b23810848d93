#include "ucp/exec/output_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stop_token>
#include <thread>
#include <vector>

#include "ucp/base/size.h"
#include "ucp/exec/file_io.h"
#include "ucp/exec/journal.h"

namespace ucp::exec {
namespace fs = std::filesystem;
using base::Result;
using base::Status;

namespace {

constexpr auto kHeartbeat = std::chrono::seconds(30);
constexpr auto kStaleAfter = std::chrono::seconds(180);  // another host's lock without a refresh

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot), "" when the process is gone.
std::string process_start_time(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return "";
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z') return "";
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;
}

struct LockInfo {
  std::string host;
  long pid = 0;
  std::string start;
  std::string temp;
};

std::string lock_text(const LockInfo& l) {
  return "host " + l.host + "\npid " + std::to_string(l.pid) + "\nstart " + l.start + "\ntemp " + l.temp + "\n";
}

bool read_lock(const std::string& path, LockInfo& l) {
  std::ifstream in(path);
  if (!in) return false;
  std::string key, value;
  while (in >> key && std::getline(in >> std::ws, value)) {
    if (key == "host") l.host = value;
    else if (key == "pid") l.pid = std::atol(value.c_str());
    else if (key == "start") l.start = value;
    else if (key == "temp") l.temp = value;
  }
  return !l.host.empty() && l.pid > 0;
}

// Whether the run that wrote lock `path` may still be alive.
bool owner_alive(const std::string& path, const LockInfo& l) {
  if (l.host == host_name()) {
    if (::kill(static_cast<pid_t>(l.pid), 0) != 0 && errno == ESRCH) return false;
    const std::string start = process_start_time(l.pid);  // "" when gone or a zombie
    return !start.empty() && (l.start.empty() || start == l.start);
  }
  std::error_code ec;
  const auto mtime = fs::last_write_time(path, ec);
  if (ec) return false;
  return fs::file_time_type::clock::now() - mtime < kStaleAfter;
}

Status write_whole(const std::string& path, const std::string& text, bool exclusive) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC), 0644);
  if (fd < 0) return io_error(exclusive ? "creating the lock" : "writing the lock", path, errno);
  Status s = pwrite_full(fd, reinterpret_cast<const std::byte*>(text.data()), text.size(), 0, path);
  ::close(fd);
  return s;
}

// Rank 0: takes the lock beside OUT, or says who holds it. The lock appears whole (written to a
// file of its own, then hard-linked to its name, which fails if it exists), so a reader never
// sees it half written.
Status take_lock(const std::string& lock, const std::string& out, const LockInfo& me) {
  const std::string mine = lock + "." + std::to_string(me.pid);
  UCP_RETURN_IF_ERROR(write_whole(mine, lock_text(me), false));
  Status result = base::failed_precondition("cannot take the lock '" + lock + "': another run keeps taking it");
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::link(mine.c_str(), lock.c_str()) == 0) {
      result = Status();
      break;
    }
    if (errno != EEXIST) {
      result = io_error("creating the lock", lock, errno);
      break;
    }
    LockInfo other;
    // A job that just ended (mpirun returned after a rank died) may leave its other ranks a moment
    // to exit: give its owner a few seconds before calling it alive.
    bool alive = read_lock(lock, other) && owner_alive(lock, other);
    for (int i = 0; alive && other.host == host_name() && i < 50; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      alive = owner_alive(lock, other);
    }
    if (alive) {
      result = base::failed_precondition("output '" + out + "' is being written by process " + std::to_string(other.pid) +
                                         " on host " + other.host + " (lock '" + lock +
                                         "'); wait for it to finish, or remove the lock if that process is gone");
      break;
    }
    // Stale: its owner is gone. Take it over.
    std::error_code ec;
    fs::remove(lock, ec);
  }
  std::error_code ec;
  fs::remove(mine, ec);
  return result;
}

struct Prepared {
  std::string temp;
  bool resumed = false;
};

Status check_out(const fs::path& final_path, const std::string& out, bool overwrite) {
  std::error_code ec;
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
  return {};
}

// Rank 0, holding the lock: earlier runs' temporary folders beside OUT are resumed (one whose
// journal names this run) or removed.
Status pick_or_clean(const fs::path& final_path, const PrepareOptions& o, Prepared& p) {
  const fs::path parent = final_path.parent_path();
  const std::string prefix = "." + final_path.filename().string() + ".ucp-tmp-";
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) == 0 && it->is_directory()) found.push_back(it->path());
  }
  std::sort(found.begin(), found.end());
  for (const fs::path& dir : found) {
    const std::string name = dir.filename().string();
    if (name.size() > 4 && name.substr(name.size() - 4) == ".old") {
      // The old OUT moved aside by a commit that was cut short before its rename: put it back.
      if (!fs::exists(final_path, ec)) {
        fs::rename(dir, final_path, ec);
        if (!ec) {
          std::cerr << "ucp-reshard " << o.command << ": restored '" << final_path.string()
                    << "' that an interrupted commit had moved aside" << std::endl;
          continue;
        }
      }
    }
    const std::string identity = read_run_identity(dir.string());
    std::string why;
    if (o.identity.empty()) why = o.why_not_resumable;
    else if (o.restart) why = "--restart";
    else if (identity.empty()) why = "it has no journal";
    else if (identity != o.identity) why = "it was another run (its command, options, rank count or source files differ)";
    else if (!p.temp.empty()) why = "a second folder of this run";
    if (why.empty()) {
      p.temp = dir.string();
      p.resumed = true;
      std::cerr << "ucp-reshard " << o.command << ": resuming the interrupted run in '" << p.temp << "'" << std::endl;
      continue;
    }
    const std::uint64_t bytes = bytes_under(dir.string());
    std::cerr << "ucp-reshard " << o.command << ": removing the stale temporary folder '" << dir.string() << "' ("
              << base::format_bytes(bytes) << ") of an earlier run: " << why << std::endl;
    fs::remove_all(dir, ec);
    if (ec) return io_error("removing the stale temporary folder", dir.string(), ec.value());
  }
  if (p.temp.empty()) {
    const auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, "%d-%llx", static_cast<int>(getpid()), stamp & 0xffffffffull);
    const fs::path tmp = parent / (prefix + suffix);
    if (!fs::create_directory(tmp, ec))
      return base::failed_precondition("cannot create temporary output folder '" + tmp.string() + "': " + ec.message());
    p.temp = tmp.string();
    if (!o.identity.empty()) {
      if (Status s = write_run_identity(p.temp, o.identity, o.sync); !s.ok()) {
        fs::remove_all(tmp, ec);  // a full disk: leave nothing behind
        return s;
      }
    }
  }
  return {};
}

}  // namespace

struct OutputDir::Heartbeat {
  std::mutex mu;
  std::condition_variable_any cv;
  std::jthread thread;
  explicit Heartbeat(std::string lock)
      : thread([this, lock = std::move(lock)](std::stop_token stop) {
          std::unique_lock lk(mu);
          while (!cv.wait_for(lk, stop, kHeartbeat, [&] { return stop.stop_requested(); }))
            ::utimensat(AT_FDCWD, lock.c_str(), nullptr, 0);
        }) {}
};

OutputDir::OutputDir() = default;
OutputDir::OutputDir(OutputDir&&) noexcept = default;
OutputDir& OutputDir::operator=(OutputDir&&) noexcept = default;
OutputDir::~OutputDir() { release_lock(); }

void OutputDir::release_lock() {
  heartbeat_.reset();
  if (lock_.empty()) return;
  std::error_code ec;
  fs::remove(lock_, ec);
  lock_.clear();
}

Result<OutputDir> OutputDir::prepare(comm::Communicator& comm, const std::string& out, const PrepareOptions& o) {
  OutputDir dir;
  dir.final_ = out;
  dir.sync_ = o.sync;
  Status local;
  Prepared p;
  if (comm.rank() == 0) {
    const fs::path final_path = fs::absolute(out).lexically_normal();
    local = check_out(final_path, out, o.overwrite);
    const std::string lock = (final_path.parent_path() / ("." + final_path.filename().string() + ".ucp-lock")).string();
    LockInfo me{host_name(), static_cast<long>(getpid()), process_start_time(getpid()), ""};
    if (local.ok()) local = take_lock(lock, out, me);
    if (local.ok()) {
      dir.lock_ = lock;
      local = pick_or_clean(final_path, o, p);
    }
    if (local.ok()) {
      me.temp = p.temp;
      local = write_whole(lock, lock_text(me), false);  // now naming its folder
      dir.heartbeat_ = std::make_unique<Heartbeat>(lock);
    }
    if (!local.ok()) dir.release_lock();
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", local).status);
  std::vector<std::byte> name(p.temp.size() + 1);
  std::memcpy(name.data(), p.temp.data(), p.temp.size());
  name.back() = std::byte{p.resumed ? std::uint8_t{1} : std::uint8_t{0}};
  UCP_RETURN_IF_ERROR(comm.broadcast(name, 0));
  dir.resumed_ = name.back() == std::byte{1};
  dir.temp_.assign(reinterpret_cast<const char*>(name.data()), name.size() - 1);
  return dir;
}

Status sync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("opening folder", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status() : io_error("syncing folder", dir, err);
}

Status sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("opening", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status() : io_error("syncing", path, err);
}

Status OutputDir::commit(comm::Communicator& comm, const std::function<Status()>& after_rename) {
  Status local;
  if (comm.rank() == 0) {
    std::error_code ec;
    const fs::path final_path = fs::absolute(final_).lexically_normal();
    fs::remove_all(temp_file(kJournalDir), ec);
    if (ec) local = io_error("removing the journal", temp_file(kJournalDir), ec.value());
    if (local.ok() && sync_) {
      // Every folder of the output (nested universal folders too): the files are synced by
      // their writers; the entries naming them must be durable before the rename publishes them.
      std::vector<std::string> dirs{temp_};
      for (fs::recursive_directory_iterator it(temp_, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_directory()) dirs.push_back(it->path().string());
      if (dirs.size() >= 16) {
        // Many folders (a universal checkpoint): one syncfs instead of a journal commit each.
        const int fd = ::open(temp_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || ::syncfs(fd) != 0) local = io_error("syncing the filesystem of", temp_, errno);
        if (fd >= 0) ::close(fd);
      } else {
        for (const std::string& d : dirs)
          if (local.ok()) local = sync_folder(d);
      }
    }
    fs::path aside;
    if (local.ok() && fs::exists(final_path, ec)) {
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
    if (local.ok() && sync_) local = sync_folder(final_path.parent_path().string());
    if (local.ok() && after_rename) local = after_rename();
    if (local.ok() && sync_) local = sync_folder(final_path.parent_path().string());
    if (local.ok()) release_lock();
  }
  return comm::agree(comm, "commit", local).status;
}

void OutputDir::abandon(comm::Communicator& comm) {
  (void)comm.barrier();
  if (comm.rank() == 0 && !temp_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
  release_lock();
}

void OutputDir::keep_for_resume(comm::Communicator& comm) {
  (void)comm.barrier();
  release_lock();
}

}  // namespace ucp::exec
