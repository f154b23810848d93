#include "ucp/exec/phases.h"

#include <sys/resource.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ucp::exec {

void PhaseTimer::mark(const std::string& phase) {
  const auto now = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  for (auto& [name, secs] : phases_)
    if (name == phase) {
      secs += s;
      return;
    }
  phases_.emplace_back(phase, s);
}

std::uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

base::Status agree_on_digest(comm::Communicator& comm, std::uint64_t digest) {
  UCP_ASSIGN_OR_RETURN(auto all, comm.all_gather(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&digest), sizeof digest)));
  for (std::size_t r = 0; r < all.size(); ++r) {
    std::uint64_t d = 0;
    if (all[r].size() == sizeof d) std::memcpy(&d, all[r].data(), sizeof d);
    if (d != digest) return base::internal_error("rank " + std::to_string(r) + " computed a different plan (digest mismatch)");
  }
  return {};
}

std::string report_timings(comm::Communicator& comm, const PhaseTimer& timer, std::uint64_t bytes_written_total) {
  // Phases are the same list on every rank (same code path); reduce microseconds by max.
  std::vector<std::uint64_t> micros;
  double total = 0;
  for (const auto& [name, s] : timer.phases()) {
    micros.push_back(static_cast<std::uint64_t>(s * 1e6));
    total += s;
  }
  micros.push_back(static_cast<std::uint64_t>(total * 1e6));
  std::vector<std::uint64_t> max_micros = micros;
  (void)comm.all_reduce_max(max_micros);
  std::uint64_t rss = peak_rss_bytes();
  auto gathered = comm.all_gather(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&rss), sizeof rss));
  nlohmann::json j;
  j["ranks"] = comm.size();
  nlohmann::json phases = nlohmann::json::object();
  for (std::size_t i = 0; i < timer.phases().size(); ++i) phases[timer.phases()[i].first] = static_cast<double>(max_micros[i]) / 1e6;
  j["phases_s"] = phases;
  j["wall_s"] = static_cast<double>(max_micros.back()) / 1e6;
  j["bytes_written"] = bytes_written_total;
  nlohmann::json rss_list = nlohmann::json::array();
  if (gathered.ok())
    for (const auto& b : *gathered) {
      std::uint64_t v = 0;
      if (b.size() == sizeof v) std::memcpy(&v, b.data(), sizeof v);
      rss_list.push_back(v);
    }
  j["peak_rss_bytes"] = rss_list;
  return j.dump();
}

}  // namespace ucp::exec
