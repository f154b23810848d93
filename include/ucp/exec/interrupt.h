// Stopping a conversion on request, and the test-only hook that kills or signals a rank at a
// precise point.
//
// SIGTERM and SIGINT (Slurm sends SIGTERM before SIGKILL at preemption and time limits; --signal
// asks for it early) only set a flag. The executor checks it, agreed across ranks, at every round
// boundary: every rank stops there, its journal is already durable, and the command exits with
// code 10 (Interrupted) and a line saying how to resume.
#pragma once

#include <cstddef>
#include <string_view>

#include "ucp/comm/communicator.h"

namespace ucp::exec {

/// Installs the SIGTERM/SIGINT handlers (idempotent).
void install_stop_handlers();
/// The signal that asked this process to stop, or 0.
int stop_signal();
/// Collective: the signal any rank received (the highest number), or 0 on every rank.
int agreed_stop_signal(comm::Communicator& comm);
/// "SIGTERM", "SIGINT", "signal 12".
std::string signal_name(int sig);

/// TEST ONLY. UCP_TEST_FAIL_AT="PHASE:N:RANK[:SIGNAL]" (SIGNAL: KILL, the default, or TERM): the
/// rank RANK raises that signal on itself when it reaches point N of PHASE: "create" (files
/// created, before the journal records it), "transfer" (round N written, before it is recorded),
/// "finalize" (headers written, before it is recorded), "commit" (before the journal is removed
/// and the folder renamed). UCP_TEST_ROUND_DELAY_MS=M sleeps M ms after every round (so a test can
/// signal mpirun mid-run). Never set these outside tests.
void test_hook(std::string_view phase, std::size_t n, int rank);

}  // namespace ucp::exec
