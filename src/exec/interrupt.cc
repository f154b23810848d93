#include "ucp/exec/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>

namespace ucp::exec {
namespace {

std::atomic<int> g_stop{0};

extern "C" void on_stop_signal(int sig) { g_stop.store(sig, std::memory_order_relaxed); }

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

int stop_signal() { return g_stop.load(std::memory_order_relaxed); }

int agreed_stop_signal(comm::Communicator& comm) {
  std::uint64_t sig = static_cast<std::uint64_t>(stop_signal());
  if (!comm.all_reduce_max(std::span<std::uint64_t>(&sig, 1)).ok()) return 0;
  return static_cast<int>(sig);
}

std::string signal_name(int sig) {
  if (sig == SIGTERM) return "SIGTERM";
  if (sig == SIGINT) return "SIGINT";
  return "signal " + std::to_string(sig);
}

void test_hook(std::string_view phase, std::size_t n, int rank) {
  static const char* spec = std::getenv("UCP_TEST_FAIL_AT");
  static const long delay_ms = [] {
    const char* d = std::getenv("UCP_TEST_ROUND_DELAY_MS");
    return d ? std::atol(d) : 0L;
  }();
  if (phase == "transfer" && delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  if (!spec) return;
  const std::string s(spec);
  const auto c1 = s.find(':'), c2 = s.find(':', c1 + 1);
  if (c1 == std::string::npos || c2 == std::string::npos) return;
  const auto c3 = s.find(':', c2 + 1);
  if (s.substr(0, c1) != phase) return;
  if (std::stoul(s.substr(c1 + 1, c2 - c1 - 1)) != n) return;
  if (std::stoi(s.substr(c2 + 1, c3 == std::string::npos ? std::string::npos : c3 - c2 - 1)) != rank) return;
  const std::string sig = c3 == std::string::npos ? "KILL" : s.substr(c3 + 1);
  ::raise(sig == "TERM" ? SIGTERM : sig == "INT" ? SIGINT : SIGKILL);
}

}  // namespace ucp::exec
