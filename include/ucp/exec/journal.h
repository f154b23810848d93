// The journal of a conversion, kept in its temporary folder (.ucp-journal/) so that a run killed
// or preempted part way can be resumed by the same command:
//   run        what the run is (written once by rank 0 when it creates the folder): command, rank
//              count, plan digest, every source file with its size and mtime. A later run resumes
//              the folder only when its own identity is the same text.
//   rank-<r>   rank r's log, append-only records, each ending in a CRC-32 of itself (a torn last
//              record is ignored): "created" (its files exist with their fixed bytes), "round i"
//              with the zip CRC pieces it computed in round i, "finalized". A record is appended
//              only after the bytes it vouches for are durable (fdatasync; not with --no-sync).
// A round is finished when every rank has recorded it; resume continues after the rounds every
// rank finished, in order, and rebuilds the CRC pieces finalize needs from the records.
// The journal is removed just before the folder is renamed to OUT.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"

namespace ucp::exec {

/// The journal folder inside the temporary folder.
inline constexpr const char* kJournalDir = ".ucp-journal";

/// A zip CRC piece as the journal keeps it: output file, zip entry, offset, length, CRC-32.
struct JournalCrc {
  std::int32_t file = 0;
  std::int32_t entry = 0;
  std::uint64_t offset = 0;
  std::uint64_t len = 0;
  std::uint32_t crc = 0;
  friend bool operator==(const JournalCrc&, const JournalCrc&) = default;
};

/// The identity text of a run: `command`, the rank count, the plan digest and every source file
/// (path, size, mtime in ns; a missing file reads "missing").
std::string run_identity(const std::string& command, int ranks, std::uint64_t digest,
                         const std::vector<std::string>& source_paths);

/// The identity recorded in temporary folder `temp`, or "" when it has none (or it is unreadable).
std::string read_run_identity(const std::string& temp);
/// Writes `identity` into `temp`'s journal (creating .ucp-journal/); durable unless !sync.
base::Status write_run_identity(const std::string& temp, const std::string& identity, bool sync);

/// One rank's log: what it finished, read at open, appended as it goes.
class RankJournal {
 public:
  RankJournal() = default;
  RankJournal(RankJournal&& o) noexcept;
  RankJournal& operator=(RankJournal&& o) noexcept;
  RankJournal(const RankJournal&) = delete;
  RankJournal& operator=(const RankJournal&) = delete;
  ~RankJournal();

  /// Opens (creating) rank `rank`'s log in `temp`; reads its valid records and cuts a torn tail.
  static base::Result<RankJournal> open(const std::string& temp, int rank, bool sync);

  bool created() const { return created_; }
  /// Rounds 0 .. rounds_done()-1 are recorded.
  std::size_t rounds_done() const { return round_crcs_.size(); }
  bool finalized() const { return finalized_; }
  /// The CRC pieces recorded for round `round` (< rounds_done()).
  const std::vector<JournalCrc>& crcs_of_round(std::size_t round) const { return round_crcs_[round]; }

  base::Status record_created();
  /// Round `round` must be rounds_done() (rounds are recorded in order).
  base::Status record_round(std::size_t round, const std::vector<JournalCrc>& crcs);
  base::Status record_finalized();

  /// Keeps only what every rank agreed on (`rounds` rounds, created, not finalized unless
  /// `finalized`): later records are cut off, so the next record_round is round `rounds`.
  base::Status keep(std::size_t rounds, bool finalized);
  /// Forgets everything (the log is emptied): a run that starts over in this folder.
  base::Status reset();

 private:
  base::Status append(std::uint32_t kind, std::uint32_t round, const std::vector<JournalCrc>& crcs);

  int fd_ = -1;
  bool sync_ = true;
  std::string path_;
  bool created_ = false;
  bool finalized_ = false;
  std::vector<std::vector<JournalCrc>> round_crcs_;
  std::vector<std::uint64_t> ends_;  // file offset after each valid record, in order
  std::uint64_t created_end_ = 0;    // after the "created" record
};

/// What every rank's journal agrees the folder holds: the minimum over ranks.
struct ResumePoint {
  bool created = false;       ///< Every rank created its files.
  std::size_t rounds = 0;     ///< Rounds every rank finished (a prefix).
  bool finalized = false;     ///< Every rank finalized.
};

/// Collective: the resume point of every rank's `journal`, the same on every rank.
base::Result<ResumePoint> agree_resume_point(comm::Communicator& comm, const RankJournal& journal);

/// Bytes under `path` (files only), for the line that says what a stale folder held.
std::uint64_t bytes_under(const std::string& path);

}  // namespace ucp::exec
