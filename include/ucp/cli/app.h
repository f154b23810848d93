// Command-line entry point: parses options, starts the communicator, runs the chosen command,
// and makes every rank exit with the same code.
#pragma once

namespace ucp::cli {

/// Runs ucp-reshard with the process arguments; returns the exit code.
int run_main(int argc, char** argv);

}  // namespace ucp::cli
