// The daemon's lifecycle on the main thread: open listeners, start workers,
// handle signals, stop gracefully.
#pragma once

#include <string>
#include <vector>

#include "fulcrum/config.hpp"
#include "fulcrum/fd_store.hpp"
#include "fulcrum/upgrade.hpp"

namespace fulcrum {

// Exit codes of SPEC.md.
enum ExitCode : int { kExitOk = 0, kExitBadConfig = 1, kExitUsage = 2, kExitStartup = 3 };

// What the daemon needs besides its configuration.
struct DaemonStart {
  std::vector<std::string> arguments;  // argv, for an upgrade's exec
  std::string executable;              // own_executable() at start-up: what an upgrade execs
  InheritedState inherited;            // set in the image an upgrade exec'd
  StoredFds stored;                    // systemd's fd store, on a start under systemd
};

// Runs until SIGTERM/SIGINT and returns the process exit code.
int run_daemon(Config config, DaemonStart start);

}  // namespace fulcrum
