#include "ucp/exec/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ucp/exec/file_io.h"
#include "ucp/exec/output_dir.h"
#include "ucp/format/crc32.h"

namespace ucp::exec {
namespace fs = std::filesystem;
using base::Result;
using base::Status;

namespace {

constexpr std::uint32_t kMagic = 0x4a504355;  // "UCPJ"
constexpr std::uint32_t kCreated = 1, kRound = 2, kFinalized = 3;
constexpr std::size_t kHeaderBytes = 16;  // magic, kind, round, piece count
constexpr std::size_t kPieceBytes = 28;   // file, entry, offset, len, crc

std::string journal_dir(const std::string& temp) { return temp + "/" + kJournalDir; }

void put32(std::vector<std::byte>& b, std::uint32_t v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  b.insert(b.end(), p, p + 4);
}
void put64(std::vector<std::byte>& b, std::uint64_t v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  b.insert(b.end(), p, p + 8);
}
std::uint32_t get32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t get64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

std::string run_identity(const std::string& command, int ranks, std::uint64_t digest,
                         const std::vector<std::string>& source_paths) {
  std::ostringstream os;
  os << "ucp-reshard journal 1\ncommand " << command << "\nranks " << ranks << "\nplan " << std::hex << digest
     << std::dec << "\n";
  for (const std::string& p : source_paths) {
    struct stat st {};
    const std::string abs = fs::absolute(p).lexically_normal().string();
    if (::stat(p.c_str(), &st) != 0) {
      os << "source " << abs << " missing\n";
      continue;
    }
    os << "source " << abs << " " << st.st_size << " "
       << static_cast<long long>(st.st_mtim.tv_sec) * 1000000000ll + st.st_mtim.tv_nsec << "\n";
  }
  return os.str();
}

std::string read_run_identity(const std::string& temp) {
  std::ifstream in(journal_dir(temp) + "/run", std::ios::binary);
  if (!in) return "";
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

Status write_run_identity(const std::string& temp, const std::string& identity, bool sync) {
  const std::string dir = journal_dir(temp);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error("creating folder", dir, ec.value());
  const std::string path = dir + "/run";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("creating", path, errno);
  Status s = pwrite_full(fd, reinterpret_cast<const std::byte*>(identity.data()), identity.size(), 0, path);
  if (s.ok() && sync && ::fsync(fd) != 0) s = io_error("syncing", path, errno);
  ::close(fd);
  if (s.ok() && sync) s = sync_folder(dir);
  if (s.ok() && sync) s = sync_folder(temp);
  return s;
}

RankJournal::RankJournal(RankJournal&& o) noexcept { *this = std::move(o); }

RankJournal& RankJournal::operator=(RankJournal&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    sync_ = o.sync_;
    path_ = std::move(o.path_);
    created_ = o.created_;
    finalized_ = o.finalized_;
    round_crcs_ = std::move(o.round_crcs_);
    ends_ = std::move(o.ends_);
    created_end_ = o.created_end_;
  }
  return *this;
}

RankJournal::~RankJournal() {
  if (fd_ >= 0) ::close(fd_);
}

Result<RankJournal> RankJournal::open(const std::string& temp, int rank, bool sync) {
  const std::string dir = journal_dir(temp);
  std::error_code ec;
  fs::create_directories(dir, ec);
  RankJournal j;
  j.sync_ = sync;
  j.path_ = dir + "/rank-" + std::to_string(rank);
  j.fd_ = ::open(j.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (j.fd_ < 0) return io_error("opening the journal", j.path_, errno);
  struct stat st {};
  if (::fstat(j.fd_, &st) != 0) return io_error("reading the journal", j.path_, errno);
  std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
  UCP_RETURN_IF_ERROR(pread_full(j.fd_, bytes.data(), bytes.size(), 0, j.path_));
  // Valid records in order: created, round 0, 1, ..., finalized. Anything else ends the log.
  std::size_t pos = 0;
  while (pos + kHeaderBytes + 4 <= bytes.size()) {
    const std::byte* h = bytes.data() + pos;
    const std::uint32_t kind = get32(h + 4), round = get32(h + 8), count = get32(h + 12);
    if (get32(h) != kMagic) break;
    const std::size_t len = kHeaderBytes + std::size_t{count} * kPieceBytes;
    if (count > (bytes.size() - pos) / kPieceBytes || pos + len + 4 > bytes.size()) break;
    if (format::crc32_update(0, std::span<const std::byte>(h, len)) != get32(h + len)) break;
    if (kind == kCreated && !j.created_) {
      j.created_ = true;
    } else if (kind == kRound && j.created_ && !j.finalized_ && round == j.round_crcs_.size()) {
      std::vector<JournalCrc> crcs(count);
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::byte* p = h + kHeaderBytes + std::size_t{i} * kPieceBytes;
        crcs[i] = {static_cast<std::int32_t>(get32(p)), static_cast<std::int32_t>(get32(p + 4)), get64(p + 8),
                   get64(p + 16), get32(p + 24)};
      }
      j.round_crcs_.push_back(std::move(crcs));
    } else if (kind == kFinalized && j.created_ && !j.finalized_) {
      j.finalized_ = true;
    } else {
      break;
    }
    pos += len + 4;
    j.ends_.push_back(pos);
    if (kind == kCreated) j.created_end_ = pos;
  }
  if (pos != bytes.size() && ::ftruncate(j.fd_, static_cast<off_t>(pos)) != 0)
    return io_error("cutting the torn end of the journal", j.path_, errno);
  return j;
}

Status RankJournal::append(std::uint32_t kind, std::uint32_t round, const std::vector<JournalCrc>& crcs) {
  std::vector<std::byte> rec;
  rec.reserve(kHeaderBytes + crcs.size() * kPieceBytes + 4);
  put32(rec, kMagic);
  put32(rec, kind);
  put32(rec, round);
  put32(rec, static_cast<std::uint32_t>(crcs.size()));
  for (const JournalCrc& c : crcs) {
    put32(rec, static_cast<std::uint32_t>(c.file));
    put32(rec, static_cast<std::uint32_t>(c.entry));
    put64(rec, c.offset);
    put64(rec, c.len);
    put32(rec, c.crc);
  }
  put32(rec, format::crc32_update(0, rec));
  const std::uint64_t at = ends_.empty() ? 0 : ends_.back();
  UCP_RETURN_IF_ERROR(pwrite_full(fd_, rec.data(), rec.size(), at, path_));
  if (sync_ && ::fdatasync(fd_) != 0) return io_error("syncing the journal", path_, errno);
  ends_.push_back(at + rec.size());
  return {};
}

Status RankJournal::record_created() {
  UCP_RETURN_IF_ERROR(append(kCreated, 0, {}));
  created_ = true;
  created_end_ = ends_.back();
  return {};
}

Status RankJournal::record_round(std::size_t round, const std::vector<JournalCrc>& crcs) {
  if (!created_ || finalized_ || round != round_crcs_.size())
    return base::internal_error("journal '" + path_ + "': round " + std::to_string(round) + " recorded out of order");
  UCP_RETURN_IF_ERROR(append(kRound, static_cast<std::uint32_t>(round), crcs));
  round_crcs_.push_back(crcs);
  return {};
}

Status RankJournal::record_finalized() {
  UCP_RETURN_IF_ERROR(append(kFinalized, 0, {}));
  finalized_ = true;
  return {};
}

Status RankJournal::keep(std::size_t rounds, bool finalized) {
  if (finalized && finalized_) return {};
  if (rounds > round_crcs_.size() || !created_) return base::internal_error("journal '" + path_ + "': cannot keep more than it holds");
  finalized_ = false;
  round_crcs_.resize(rounds);
  // Records: created, round 0 .. n-1, [finalized]: keep 1 + rounds of them.
  ends_.resize(1 + rounds);
  if (::ftruncate(fd_, static_cast<off_t>(ends_.back())) != 0) return io_error("cutting the journal", path_, errno);
  return {};
}

Status RankJournal::reset() {
  created_ = finalized_ = false;
  round_crcs_.clear();
  ends_.clear();
  created_end_ = 0;
  if (::ftruncate(fd_, 0) != 0) return io_error("emptying the journal", path_, errno);
  return {};
}

Result<ResumePoint> agree_resume_point(comm::Communicator& comm, const RankJournal& journal) {
  // Max of the complements = min of the values.
  std::uint64_t v[3] = {journal.created() ? 0u : 1u, ~static_cast<std::uint64_t>(journal.rounds_done()),
                        journal.finalized() ? 0u : 1u};
  UCP_RETURN_IF_ERROR(comm.all_reduce_max(std::span<std::uint64_t>(v, 3)));
  ResumePoint p;
  p.created = v[0] == 0;
  p.rounds = p.created ? static_cast<std::size_t>(~v[1]) : 0;
  p.finalized = p.created && v[2] == 0;
  return p;
}

std::uint64_t bytes_under(const std::string& path) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) total += it->file_size(e2);
  }
  return total;
}

}  // namespace ucp::exec
