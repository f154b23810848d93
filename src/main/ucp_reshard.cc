// The only main(): hands over to the CLI, which owns MPI start-up, agreement and exit codes.
#include "ucp/cli/app.h"

int main(int argc, char** argv) { return ucp::cli::run_main(argc, argv); }
