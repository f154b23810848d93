// agree(): the one place where ranks turn their local outcomes into a shared verdict, so that every
// rank prints the same error and exits with the same code. Format documented in communicator.h.
#include <algorithm>
#include <map>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "ucp/comm/communicator.h"

namespace ucp::comm {

using base::Status;
using base::StatusCode;

namespace {

constexpr std::string_view kTruncatedMarker = " [truncated]";

std::string truncate_message(std::string message) {
  if (message.size() <= kAgreeMaxMessageBytes) return message;
  std::size_t cut = kAgreeMaxMessageBytes - kTruncatedMarker.size();
  // Do not split a UTF-8 sequence: back off while the first dropped byte is a continuation byte.
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  message.resize(cut);
  message += kTruncatedMarker;
  return message;
}

std::vector<std::byte> encode(const Status& s) {
  std::string message = s.ok() ? std::string() : truncate_message(s.message());
  std::vector<std::byte> out(1 + message.size());
  out[0] = static_cast<std::byte>(s.code());
  std::transform(message.begin(), message.end(), out.begin() + 1, [](char c) { return static_cast<std::byte>(c); });
  return out;
}

Status decode(int rank, const std::vector<std::byte>& record) {
  if (record.empty()) {
    return base::internal_error("rank " + std::to_string(rank) + " sent an empty agreement record");
  }
  const auto code = static_cast<std::uint8_t>(record[0]);
  if (code > static_cast<std::uint8_t>(StatusCode::kInterrupted)) {
    return base::internal_error("rank " + std::to_string(rank) + " sent unknown status code " + std::to_string(code));
  }
  if (code == 0) return Status();
  std::string message(record.size() - 1, '\0');
  std::transform(record.begin() + 1, record.end(), message.begin(), [](std::byte b) { return static_cast<char>(b); });
  return Status(static_cast<StatusCode>(code), std::move(message));
}

}  // namespace

std::string format_rank_list(std::span<const int> ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (i > 0) out += ',';
    out += std::to_string(ranks[i]);
    if (j > i) out += '-' + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

Agreement summarize_agreement(std::string_view step, std::span<const Status> per_rank) {
  struct Group {
    StatusCode code;
    std::string message;
    std::vector<int> ranks;
  };
  std::vector<Group> groups;  // in order of their lowest rank
  std::map<std::pair<StatusCode, std::string>, std::size_t> index;
  int failed = 0;
  for (std::size_t r = 0; r < per_rank.size(); ++r) {
    const Status& s = per_rank[r];
    if (s.ok()) continue;
    ++failed;
    std::string message = truncate_message(s.message());
    auto [it, inserted] = index.try_emplace({s.code(), message}, groups.size());
    if (inserted) groups.push_back(Group{s.code(), std::move(message), {}});
    groups[it->second].ranks.push_back(static_cast<int>(r));
  }
  if (failed == 0) return Agreement{};

  std::string text = "step '" + std::string(step) + "' failed on " + std::to_string(failed) + "/" +
                     std::to_string(per_rank.size()) + " ranks: ";
  int listed = 0;
  for (std::size_t g = 0; g < groups.size() && g < kAgreeMaxGroups; ++g) {
    if (g > 0) text += "; ";
    text += format_rank_list(groups[g].ranks) + ": " + std::string(base::status_code_name(groups[g].code)) + ": " +
            groups[g].message;
    listed += static_cast<int>(groups[g].ranks.size());
  }
  if (listed < failed) text += "; ... and " + std::to_string(failed - listed) + " more failing ranks";
  return Agreement{Status(groups.front().code, std::move(text)), failed};
}

Agreement agree(Communicator& comm, std::string_view step, const Status& local) noexcept {
  try {
    auto gathered = comm.all_gather(encode(local));
    if (!gathered.ok()) {
      return Agreement{base::unavailable("step '" + std::string(step) +
                                         "': could not exchange outcomes between ranks: " + gathered.status().message()),
                       0};
    }
    std::vector<Status> statuses;
    statuses.reserve(gathered->size());
    for (std::size_t r = 0; r < gathered->size(); ++r) statuses.push_back(decode(static_cast<int>(r), (*gathered)[r]));
    return summarize_agreement(step, statuses);
  } catch (const std::bad_alloc&) {
    return Agreement{base::resource_exhausted("step '" + std::string(step) + "': out of memory while agreeing"), 0};
  }
}

}  // namespace ucp::comm
