// The daemon's lifecycle on the main thread: open listeners, start workers,
// handle signals, stop gracefully.
#pragma once

#include "fulcrum/config.hpp"

namespace fulcrum {

// Exit codes of SPEC.md.
enum ExitCode : int { kExitOk = 0, kExitBadConfig = 1, kExitUsage = 2, kExitStartup = 3 };

// Runs until SIGTERM/SIGINT and returns the process exit code.
int run_daemon(Config config);

}  // namespace fulcrum
